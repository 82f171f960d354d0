// Scheduler commands: posix_spawnp with pipes for stdout and stderr, a poll() loop bounded by
// the command timeout, and a SIGKILL to the command's process group at the deadline. The group
// matters: a wrapper script (as site-installed `sbatch` wrappers often are) may leave children
// that hold the pipes open; killing only the leader would leave them and the pipes behind.
#include "providers/scheduler_command.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>

#include <fmt/format.h>

#include "pervade/errors.hpp"
#include "util/fd.hpp"
#include "util/process.hpp"
#include "util/spawn.hpp"

extern char** environ;

namespace pervade::detail {

namespace {

using Clock = std::chrono::steady_clock;

constexpr int kReapPollMs = 10;  // after both pipes closed, until the command has exited
// While the pipes are open: how often to look whether the command itself has exited. A
// command may leave a child behind that keeps the pipes open (a wrapper script starting a
// logger); its output is complete once the command has exited, so reading stops then.
constexpr int kExitCheckMs = 20;

int ms_until(Clock::time_point deadline) {
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<long long>(ms, 0, INT_MAX));
}

// The reason names the command: out of descriptors, say, every command fails here.
std::pair<Fd, Fd> make_pipe(const std::string& line) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw Error(fmt::format("cannot run '{}': pipe2: {}", line, os_error(errno)));
  return {Fd(fds[0]), Fd(fds[1])};
}

// Blocks until `pid` is reaped; returns its wait status.
int reap(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

}  // namespace

std::string command_line(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) {
    if (!out.empty()) out += ' ';
    out += a;
  }
  return out;
}

CommandResult run_command(const std::vector<std::string>& argv, std::chrono::duration<double> timeout,
                          const std::string& stdin_path) {
  if (argv.empty()) throw Error("run_command: empty command");
  const std::string line = command_line(argv);
  auto [out_r, out_w] = make_pipe(line);
  auto [err_r, err_w] = make_pipe(line);

  SpawnFileActions fa;
  check_spawn(posix_spawn_file_actions_addopen(&fa.fa, 0, stdin_path.empty() ? "/dev/null" : stdin_path.c_str(),
                                               O_RDONLY, 0),
              "posix_spawn_file_actions_addopen");
  check_spawn(posix_spawn_file_actions_adddup2(&fa.fa, out_w.get(), 1), "posix_spawn_file_actions_adddup2");
  check_spawn(posix_spawn_file_actions_adddup2(&fa.fa, err_w.get(), 2), "posix_spawn_file_actions_adddup2");
  SpawnAttr attr;
  check_spawn(reset_child_signals(attr, POSIX_SPAWN_SETPGROUP), "posix_spawnattr_setflags");
  check_spawn(posix_spawnattr_setpgroup(&attr.attr, 0), "posix_spawnattr_setpgroup");

  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  const int rc = ::posix_spawnp(&pid, args[0], &fa.fa, &attr.attr, args.data(), environ);
  out_w.reset();
  err_w.reset();
  if (rc == ENOENT) throw Error(fmt::format("'{}' was not found on PATH (is the scheduler's client installed here?)", argv[0]));
  if (rc != 0) throw Error(fmt::format("cannot run '{}': {}", line, os_error(rc)));

  const auto deadline = Clock::now() + std::chrono::ceil<Clock::duration>(timeout);
  auto kill_and_throw = [&]() {
    ::kill(-pid, SIGKILL);
    reap(pid);
    throw Error(fmt::format("'{}' did not finish within cmd_timeout ({} s) and was killed", line, timeout.count()));
  };

  CommandResult result;
  Fd* fds[2] = {&out_r, &err_r};
  std::string* sinks[2] = {&result.out, &result.err};
  while (out_r.valid() || err_r.valid()) {
    pollfd p[2];
    int n = 0;
    int which[2];
    for (int i = 0; i < 2; ++i) {
      if (!fds[i]->valid()) continue;
      p[n] = pollfd{fds[i]->get(), POLLIN, 0};
      which[n++] = i;
    }
    const int ready = ::poll(p, n, std::min(ms_until(deadline), kExitCheckMs));
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) {
      ::kill(-pid, SIGKILL);
      reap(pid);
      throw Error(fmt::format("poll failed while running '{}': {}", line, os_error(errno)));
    }
    if (ready == 0 && Clock::now() >= deadline) kill_and_throw();
    for (int k = 0; k < n; ++k) {
      if (p[k].revents == 0) continue;
      char buf[4096];
      const ssize_t got = ::read(p[k].fd, buf, sizeof buf);
      if (got > 0)
        sinks[which[k]]->append(buf, static_cast<std::size_t>(got));
      else if (got == 0 || (errno != EINTR && errno != EAGAIN))
        fds[which[k]]->reset();
    }
    if (has_exited(pid)) {
      // Whatever the command wrote is in the pipes now: take it without waiting for EOF.
      for (int i = 0; i < 2; ++i) {
        if (!fds[i]->valid()) continue;
        ::fcntl(fds[i]->get(), F_SETFL, O_NONBLOCK);
        char buf[4096];
        ssize_t got;
        while ((got = ::read(fds[i]->get(), buf, sizeof buf)) > 0) sinks[i]->append(buf, static_cast<std::size_t>(got));
        fds[i]->reset();
      }
    }
  }
  // Both pipes are closed; the command has exited or is about to (or closed them on purpose).
  // It usually exits right after closing them: look again soon, then less often.
  for (int wait_ms = 1;; wait_ms = std::min(2 * wait_ms, kReapPollMs)) {
    int status = 0;
    const pid_t w = ::waitpid(pid, &status, WNOHANG);
    if (w == pid) {
      result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      return result;
    }
    if (w < 0 && errno != EINTR) throw Error(fmt::format("waitpid failed for '{}': {}", line, os_error(errno)));
    if (Clock::now() >= deadline) kill_and_throw();
    ::poll(nullptr, 0, wait_ms);
  }
}

}  // namespace pervade::detail
