// Shell commands as tasks of the C++ API: exit 0 gives 0, anything else BashExitFailure.
#include "pervade/errors.hpp"
#include "pervade/future.hpp"
#include "pervade/shell.hpp"

namespace pervade::detail {

namespace {
class ShellBody final : public TaskBody {
 public:
  ShellBody(ShellCommand cmd, std::string name) : cmd_(std::move(cmd)), name_(std::move(name)) {}

  Outcome run(TaskContext&) override {
    try {
      // A body runs once per try; an interrupt aimed at an earlier try must not stop this one.
      interrupted_.store(false);
      ShellInterrupt interrupt;
      current_.store(&interrupt);
      if (interrupted_.load()) interrupt.request();
      ShellResult r = run_shell(cmd_, &interrupt);
      current_.store(nullptr);
      if (r.interrupted || r.timed_out) {
        if (reason_.load() == StopReason::shutdown)
          return Outcome::failure(std::make_exception_ptr(DataFlowKernelClosed(
              "shell task " + name_ + " was stopped (process group killed): the DataFlowKernel was cleaned up")));
        return Outcome::failure(std::make_exception_ptr(AppTimeout("shell task " + name_ + " exceeded its walltime")));
      }
      if (r.exit_code != 0) return Outcome::failure(std::make_exception_ptr(BashExitFailure(name_, r.exit_code)));
      return Outcome::success(0);
    } catch (...) {
      current_.store(nullptr);
      return Outcome::failure(std::current_exception());
    }
  }

  void interrupt(StopReason reason) override {
    reason_.store(reason);
    interrupted_.store(true);
    // The executor calls this under its slot lock while run() is in progress, so the
    // ShellInterrupt on run()'s stack is alive if it is published.
    if (auto* i = current_.load()) i->request();
  }

 private:
  ShellCommand cmd_;
  std::string name_;
  std::atomic<ShellInterrupt*> current_{nullptr};
  std::atomic<bool> interrupted_{false};
  std::atomic<StopReason> reason_{StopReason::walltime};
};
}  // namespace

std::shared_ptr<TaskBody> make_shell_body(const Shell& shell, std::string name) {
  ShellCommand cmd;
  cmd.command = shell.command;
  cmd.stdout_spec = shell.stdout_spec;
  cmd.stderr_spec = shell.stderr_spec;
  cmd.working_dir = shell.working_dir;
  // Walltime is enforced by the kernel, which interrupts the command through the executor.
  return std::make_shared<ShellBody>(std::move(cmd), std::move(name));
}

}  // namespace pervade::detail
