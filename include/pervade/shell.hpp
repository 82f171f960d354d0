#pragma once
// Running a shell command the way bash apps do: /bin/bash -c in its own process group,
// stdout/stderr redirected to files, the whole group killed on walltime expiry or interrupt.
#include <atomic>
#include <chrono>
#include <optional>
#include <string>

namespace pervade {

struct StdStream {
  std::string path;           // empty: inherit the caller's stream
  bool append = true;         // false: truncate ("w")
};

struct ShellCommand {
  std::string command;
  StdStream stdout_spec;
  StdStream stderr_spec;
  std::chrono::duration<double> walltime{0};  // 0 = no limit
  std::string working_dir;                    // empty: current directory
};

struct ShellResult {
  int exit_code = 0;       // the command's exit status, or 128+signal if it was killed by one
  bool timed_out = false;  // walltime expired; the process group was killed
  bool interrupted = false;// ShellInterrupt::request() was called; the process group was killed
};

// Lets another thread stop a running command (kills its process group). Thread-safe.
class ShellInterrupt {
 public:
  void request();
  bool requested() const { return requested_.load(); }

 private:
  friend ShellResult run_shell(const ShellCommand&, ShellInterrupt*);
  std::atomic<bool> requested_{false};
  std::atomic<int> pgid_{0};
};

// Blocks until the command ends. Throws BadStdStreamFile if a stream file cannot be
// opened, pervade::Error if the process cannot be started.
ShellResult run_shell(const ShellCommand& cmd, ShellInterrupt* interrupt = nullptr);

}  // namespace pervade
