#pragma once
// The native C++ API: typed futures over task records, submission of callables and shell
// commands with futures as dependencies. Futures may be copied and waited on from any thread.
#include <any>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "pervade/dataflow_kernel.hpp"
#include "pervade/errors.hpp"
#include "pervade/shell.hpp"
#include "pervade/task.hpp"

namespace pervade {

template <class T>
class Future {
 public:
  Future() = default;
  explicit Future(TaskRecordPtr task) : task_(std::move(task)) {}

  TaskId id() const { return task_->id(); }
  TaskState state() const { return task_->state(); }
  bool done() const { return task_->done(); }
  const TaskRecordPtr& record() const { return task_; }
  void wait() const { task_->wait(); }
  bool wait_for(std::chrono::duration<double> timeout) const { return task_->wait_for(timeout); }
  // Waits, then returns the value or rethrows the task's exception.
  T get() const {
    task_->wait();
    if (task_->error()) std::rethrow_exception(task_->error());
    if constexpr (!std::is_void_v<T>) return std::any_cast<const T&>(task_->value());
  }
  std::exception_ptr exception() const {
    task_->wait();
    return task_->error();
  }

 private:
  TaskRecordPtr task_;
};

// Per-call options of the typed API: dfk.submit(pervade::AppOptions{.executors = {"gpu"}}, fn, args...)
struct AppOptions {
  std::vector<std::string> executors;         // allowed labels; empty = any
  std::chrono::duration<double> walltime{0};  // 0 = none
  std::string name = "cpp_app";
};

// A shell command task: dfk.submit(pervade::Shell{"sort in.txt > out.txt"}, upstream_future)
// Its value is 0; a non-zero exit raises BashExitFailure, walltime expiry AppTimeout.
struct Shell {
  std::string command;
  StdStream stdout_spec{};
  StdStream stderr_spec{};
  std::string working_dir{};
};

namespace detail {

template <class T>
struct is_future : std::false_type {};
template <class T>
struct is_future<Future<T>> : std::true_type {};

// Dependencies come from Future arguments; other arguments are stored by value.
template <class A>
struct Arg {
  using value_type = std::decay_t<A>;
  value_type value;
  const value_type& get(const TaskContext&) const { return value; }
};
template <class T>
struct Arg<Future<T>> {
  using value_type = T;
  std::size_t dep_index;
  const T& get(const TaskContext& ctx) const { return std::any_cast<const T&>(ctx.dependency(dep_index)); }
};

template <class F, class... A>
class CallableBody final : public TaskBody {
 public:
  CallableBody(F fn, std::tuple<Arg<A>...> args) : fn_(std::move(fn)), args_(std::move(args)) {}
  Outcome run(TaskContext& ctx) override {
    try {
      using R = std::invoke_result_t<F&, const typename Arg<A>::value_type&...>;
      if constexpr (std::is_void_v<R>) {
        std::apply([&](const auto&... a) { std::invoke(fn_, a.get(ctx)...); }, args_);
        return Outcome::success({});
      } else {
        return Outcome::success(std::apply([&](const auto&... a) { return std::invoke(fn_, a.get(ctx)...); }, args_));
      }
    } catch (...) {
      return Outcome::failure(std::current_exception());
    }
  }

 private:
  F fn_;
  std::tuple<Arg<A>...> args_;
};

// walltime: also enforced by the pool when the command runs on a HighThroughputExecutor.
std::shared_ptr<TaskBody> make_shell_body(const Shell& shell, std::string name,
                                          std::chrono::duration<double> walltime = {});

template <class A>
auto make_arg(A&& a, std::vector<TaskRecordPtr>& deps) {
  using D = std::decay_t<A>;
  if constexpr (is_future<D>::value) {
    deps.push_back(a.record());
    return Arg<D>{deps.size() - 1};
  } else {
    return Arg<D>{std::forward<A>(a)};
  }
}

template <class F, class... Args>
auto submit_typed(DataFlowKernel& dfk, AppOptions opts, F&& fn, Args&&... args) {
  using Fn = std::decay_t<F>;
  using R = std::invoke_result_t<Fn&, const typename Arg<std::decay_t<Args>>::value_type&...>;
  TaskSpec spec;
  // Braced init keeps the arguments' evaluation order, so dependency indices match.
  std::tuple<Arg<std::decay_t<Args>>...> stored{make_arg(std::forward<Args>(args), spec.dependencies)...};
  spec.body = std::make_shared<CallableBody<Fn, std::decay_t<Args>...>>(std::forward<F>(fn), std::move(stored));
  spec.executors = std::move(opts.executors);
  spec.walltime = opts.walltime;
  spec.func_name = std::move(opts.name);
  return Future<R>(dfk.submit(std::move(spec)));
}

template <class... Deps>
Future<int> submit_shell(DataFlowKernel& dfk, AppOptions opts, const Shell& shell, const Deps&... deps) {
  static_assert((is_future<Deps>::value && ...), "a shell command's extra arguments must be futures");
  TaskSpec spec;
  (spec.dependencies.push_back(deps.record()), ...);
  spec.body = make_shell_body(shell, opts.name == "cpp_app" ? "shell" : opts.name, opts.walltime);
  spec.executors = std::move(opts.executors);
  spec.walltime = opts.walltime;
  spec.func_name = opts.name == "cpp_app" ? "shell" : std::move(opts.name);
  return Future<int>(dfk.submit(std::move(spec)));
}

}  // namespace detail

template <class T>
bool DataFlowKernel::cancel(const Future<T>& future) {
  return cancel(future.record());
}

template <class F, class... Args>
auto DataFlowKernel::submit(F&& fn, Args&&... args) {
  if constexpr (std::is_same_v<std::decay_t<F>, AppOptions>) {
    // dfk.submit(AppOptions{...}, callable_or_shell, args...)
    return [&]<class G, class... Rest>(G&& g, Rest&&... rest) {
      if constexpr (std::is_same_v<std::decay_t<G>, Shell>)
        return detail::submit_shell(*this, fn, g, rest...);
      else
        return detail::submit_typed(*this, fn, std::forward<G>(g), std::forward<Rest>(rest)...);
    }(std::forward<Args>(args)...);
  } else if constexpr (std::is_same_v<std::decay_t<F>, Shell>) {
    return detail::submit_shell(*this, AppOptions{}, fn, args...);
  } else {
    return detail::submit_typed(*this, AppOptions{}, std::forward<F>(fn), std::forward<Args>(args)...);
  }
}

}  // namespace pervade
