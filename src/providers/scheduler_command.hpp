#pragma once
// Runs one scheduler command (sbatch, qstat, ...) to completion with its output captured and a
// time limit. Any thread; each call is independent.
#include <chrono>
#include <string>
#include <vector>

namespace pervade::detail {

struct CommandResult {
  int exit_code = 0;  // 128 + signal if a signal ended it
  std::string out;
  std::string err;
};

// Runs argv[0] (looked up on PATH) without a shell, stdin from `stdin_path` or /dev/null, in a
// process group of its own. Throws pervade::Error when the command is not found ("'sbatch' was
// not found on PATH"), cannot start, or is still running at `timeout` (then its whole process
// group is SIGKILLed and reaped before the throw, so nothing is left behind). The output is
// complete once the command itself has exited, even if a child it left keeps the pipes open.
CommandResult run_command(const std::vector<std::string>& argv, std::chrono::duration<double> timeout,
                          const std::string& stdin_path = "");

// "sbatch /path/x.submit", for messages.
std::string command_line(const std::vector<std::string>& argv);

}  // namespace pervade::detail
