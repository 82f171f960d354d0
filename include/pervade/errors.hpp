#pragma once
// The public error hierarchy. Each class is mirrored by a Python exception with Parsl's name.
#include <cstdint>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "pervade/ids.hpp"

namespace pervade {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
  // A front end's object for this error (the Python bindings: its Python exception), made
  // once, so that every future and DependencyError holding this error shows the same object.
  // Only that front end reads and writes it, under its own lock (the GIL).
  const std::shared_ptr<void>& front_end_object() const { return front_end_object_; }
  void set_front_end_object(std::shared_ptr<void> object) const { front_end_object_ = std::move(object); }

 private:
  mutable std::shared_ptr<void> front_end_object_;
};

// Bad configuration or misuse of the API (unknown executor label, load twice, ...).
class ConfigurationError : public Error {
 public:
  using Error::Error;
};

// Shared by DependencyError and JoinError: the failed tasks, and Parsl's "representative
// cause" text, which follows the first failed dependency down to the root cause.
class PropagatedError : public Error {
 public:
  using Failures = std::vector<std::pair<std::exception_ptr, TaskId>>;
  const Failures& dependent_exceptions() const { return failed_; }
  TaskId task_id() const { return task_; }
  // The first error down the chain that is not itself a dependency/join failure.
  const std::exception_ptr& root_cause() const { return root_cause_; }
  const char* what() const noexcept override;

 protected:
  PropagatedError(const char* description, Failures failed, TaskId task);

 private:
  friend struct PropagatedChain;
  Failures failed_;
  TaskId task_;
  // The first hops of the chain and its root, so that building the error of a dependent is
  // O(1) even at the end of a long chain of failures.
  std::vector<std::string> hops_;
  std::string root_;
  std::size_t depth_ = 0;
  std::string msg_;
  std::exception_ptr root_cause_;
};

// A task cannot run because tasks it depends on failed. Never retried.
class DependencyError : public PropagatedError {
 public:
  DependencyError(Failures failed, TaskId task) : PropagatedError("Dependency failure", std::move(failed), task) {}
};

// A join task's inner tasks failed. Never retried.
class JoinError : public PropagatedError {
 public:
  JoinError(Failures failed, TaskId task) : PropagatedError("Join failure", std::move(failed), task) {}
};

// The task ran longer than its walltime and was stopped.
class AppTimeout : public Error {
 public:
  using Error::Error;
};

// A shell command exited with a non-zero status.
class BashExitFailure : public Error {
 public:
  BashExitFailure(std::string app_name, int exitcode);
  const std::string& app_name() const { return app_name_; }
  int exitcode() const { return exitcode_; }

 private:
  std::string app_name_;
  int exitcode_;
};

// Files a task promised in `outputs` do not exist after it ran.
class MissingOutputs : public Error {
 public:
  MissingOutputs(std::string reason, std::vector<std::string> outputs);
  const std::vector<std::string>& outputs() const { return outputs_; }

 private:
  std::vector<std::string> outputs_;
};

// A stdout/stderr specification that cannot be used.
class BadStdStreamFile : public Error {
 public:
  using Error::Error;
};

// The kernel was cleaned up before the task could run.
class DataFlowKernelClosed : public Error {
 public:
  using Error::Error;
};

// The task was cancelled (DataFlowKernel::cancel) before it finished.
// A task names an executor label the kernel does not have. As in Parsl, the task fails with it
// when it would be launched (Python: ValueError), not at the call.
class UnknownExecutor : public Error {
 public:
  using Error::Error;
};

class TaskCancelled : public Error {
 public:
  using Error::Error;
};

// A checkpoint cannot be loaded (missing, not a pervade checkpoint, corrupt); names the file.
class BadCheckpoint : public Error {
 public:
  using Error::Error;
};

// Message of an exception_ptr, for logs and error texts ("" if null).
std::string describe(const std::exception_ptr& e);

}  // namespace pervade
