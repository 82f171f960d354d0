// Shell commands as tasks of the C++ API: exit 0 gives 0, anything else BashExitFailure.
// On a HighThroughputExecutor the command travels as a shell task (kind 1) and the pool runs
// it without Python; the exit code that comes back is turned into the same value or error.
#include "pervade/errors.hpp"
#include "pervade/future.hpp"
#include "pervade/remote.hpp"
#include "pervade/shell.hpp"
#include "protocol/messages.hpp"

namespace pervade::detail {

namespace {

std::string single_quoted(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\"'\"'") : std::string(1, c);
  return out + "'";
}

class ShellBody final : public TaskBody {
 public:
  ShellBody(ShellCommand cmd, std::string name, std::chrono::duration<double> walltime)
      : cmd_(std::move(cmd)), name_(std::move(name)), walltime_(walltime) {}

  bool encode_remote(const TaskContext&, RemoteTask* out) override {
    protocol::ShellPayload p;
    // The wire has no working directory: the command changes to it first (a directory that
    // cannot be entered makes the command exit with status 1).
    p.command = cmd_.working_dir.empty() ? cmd_.command
                                         : "cd -- " + single_quoted(cmd_.working_dir) + " || exit 1\n" + cmd_.command;
    p.stdout_path = cmd_.stdout_spec.path;
    p.stdout_append = cmd_.stdout_spec.append;
    p.stderr_path = cmd_.stderr_spec.path;
    p.stderr_append = cmd_.stderr_spec.append;
    p.walltime = walltime_.count() > 0 ? walltime_.count() : 0;  // the kernel enforces it as well
    out->kind = protocol::kKindShell;
    out->payload = protocol::encode_shell_payload(p);
    return true;
  }
  // Encoding a command is cheap and needs no lock: done on the reactor, no encoder-thread hop.
  bool encode_remote_now(const TaskContext& ctx, RemoteTask* out) override { return encode_remote(ctx, out); }

  void decode_result(Outcome& out) override {
    if (out.error) {
      // The pool could not run the command; it sent the text of its error.
      try {
        std::rethrow_exception(out.error);
      } catch (const RemoteTaskError& e) {
        const std::string& text = e.payload();
        if (text.rfind("cannot open stdout file", 0) == 0 || text.rfind("cannot open stderr file", 0) == 0)
          out.error = std::make_exception_ptr(BadStdStreamFile(text));
        else if (text.starts_with(protocol::kShellWalltimeExceeded))
          out.error = std::make_exception_ptr(AppTimeout("shell task " + name_ + " " + text));
        else
          out.error = std::make_exception_ptr(Error("shell task " + name_ + " could not run on its pool: " + text));
      } catch (...) {
        // WorkerLost, ManagerLost, or an error of this process: as it is.
      }
      return;
    }
    const auto* bytes = std::any_cast<RemoteBytes>(&out.value);
    if (bytes == nullptr) return;  // ran in this process
    const auto code = protocol::decode_exit_code(bytes->bytes.data(), bytes->bytes.size());
    if (!code)
      out = Outcome::failure(std::make_exception_ptr(Error("shell task " + name_ + ": malformed exit code from its pool")));
    else if (*code != 0)
      out = Outcome::failure(std::make_exception_ptr(BashExitFailure(name_, *code)));
    else
      out = Outcome::success(0);
  }

  Outcome run(TaskContext&) override {
    try {
      // A body runs once per try; an interrupt aimed at an earlier try must not stop this one.
      // A cancellation stays: it may arrive just before run() and the task never runs again.
      stops_.new_try();
      ShellInterrupt interrupt;
      current_.store(&interrupt);
      if (stops_.requested()) interrupt.request();
      ShellResult r = run_shell(cmd_, &interrupt);
      current_.store(nullptr);
      if (r.interrupted || r.timed_out) return Outcome::failure(command_stop_error(stops_.reason(), "shell task " + name_));
      if (r.exit_code != 0) return Outcome::failure(std::make_exception_ptr(BashExitFailure(name_, r.exit_code)));
      return Outcome::success(0);
    } catch (...) {
      current_.store(nullptr);
      return Outcome::failure(std::current_exception());
    }
  }

  void interrupt(StopReason reason) override {
    stops_.request(reason);
    // The executor calls this under its slot lock while run() is in progress, so the
    // ShellInterrupt on run()'s stack is alive if it is published.
    if (auto* i = current_.load()) i->request();
  }

 private:
  ShellCommand cmd_;
  std::string name_;
  std::chrono::duration<double> walltime_;
  std::atomic<ShellInterrupt*> current_{nullptr};
  StopRequests stops_;
};
}  // namespace

std::shared_ptr<TaskBody> make_shell_body(const Shell& shell, std::string name,
                                          std::chrono::duration<double> walltime) {
  ShellCommand cmd;
  cmd.command = shell.command;
  cmd.stdout_spec = shell.stdout_spec;
  cmd.stderr_spec = shell.stderr_spec;
  cmd.working_dir = shell.working_dir;
  // Walltime is enforced by the kernel, which interrupts the command through the executor.
  return std::make_shared<ShellBody>(std::move(cmd), std::move(name), walltime);
}

}  // namespace pervade::detail
