// run_shell: run `/bin/bash -c <command>` the way a bash app does.
//
// Design notes
// ------------
// * The child is started with posix_spawn (glibc: clone(CLONE_VM|CLONE_VFORK), only
//   async-signal-safe work between clone and exec, and exec/chdir/dup2 failures are reported
//   back through the return value). POSIX_SPAWN_SETSID puts it in a new session, hence a new
//   process group whose id is the child's pid, so kill(-pid, SIGKILL) reaches the whole tree
//   (minus processes that deliberately leave the group with setsid/setpgid).
// * The signal mask is cleared and the dispositions that callers commonly ignore (Python
//   ignores SIGPIPE, nohup ignores SIGHUP, ...) are reset to SIG_DFL in the child.
// * Stream files are opened in the parent, before spawning, so that failures become
//   BadStdStreamFile exceptions in the caller. Every fd opened here is O_CLOEXEC and kept >= 3,
//   so concurrent spawns in other threads never inherit them and dup2 onto 1/2 never clobbers
//   one of our own descriptors. No other descriptor is closed in the child.
// * Waiting is event driven: a pidfd (pidfd_open) becomes readable when the child exits and is
//   poll()ed with the remaining walltime as timeout. ShellInterrupt::request() does not need a
//   separate wake-up fd: it SIGKILLs the process group, whose leader is our child, and the
//   leader's death is exactly what makes the pidfd readable, so the waiter wakes at once. (An
//   extra eventfd would add nothing: after an interrupt we must still wait for the child to
//   die in order to reap it; and publishing an fd number to another thread would need extra
//   synchronisation against the number being closed and reused.) Only when pidfd_open is
//   unavailable (ENOSYS on kernels < 5.3, or blocked by seccomp) do we fall back to a
//   waitid(WNOHANG) loop sleeping 10 ms between checks.
// * The child is detected as exited with waitid(WNOWAIT) / the pidfd, i.e. WITHOUT reaping it.
//   While the zombie leader exists its pid, and therefore the process-group id, cannot be
//   reused, so every kill(-pgid) issued by us or by ShellInterrupt::request() can only hit our
//   own group. The group id is withdrawn from the ShellInterrupt before the child is reaped.
// * After the main child has exited the group is SIGKILLed once more, on purpose: a bash app
//   such as `sleep 100 &` would otherwise leave background grandchildren running after the
//   task is reported finished. This matches "the task is the whole process group".
// * The caller must not reap our children behind our back (waitpid(-1), SIGCHLD = SIG_IGN);
//   if that happens the exit status is lost and run_shell throws pervade::Error.
#include "util/fd.hpp"
#include "util/spawn.hpp"
#include "util/process.hpp"
#include "pervade/shell.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <filesystem>
#include <optional>
#include <string>
#include <system_error>
#include <utility>

#include <fmt/format.h>

#include "pervade/errors.hpp"

extern char** environ;

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434  // same number on every architecture
#endif

namespace pervade {

namespace detail {
// Test hook (not part of the public API): force the waitid-polling fallback that is otherwise
// only used when pidfd_open is unavailable, so that path can be exercised by the test suite.
std::atomic<bool> g_shell_disable_pidfd{false};
void shell_disable_pidfd_for_testing(bool disable) { g_shell_disable_pidfd.store(disable); }
}  // namespace detail

namespace {

using Clock = std::chrono::steady_clock;

using detail::os_error;

// Owning file descriptor.
using detail::Fd;
using detail::has_exited;

[[noreturn]] void throw_stream_error(const char* which, const std::string& path, const std::string& what,
                                     int err) {
  throw BadStdStreamFile(fmt::format("cannot open {} file '{}': {}{}", which, path, what, os_error(err)));
}

// Opens one stream file (creating missing parent directories, like `mkdir -p`).
// The returned descriptor is O_CLOEXEC and >= 3.
Fd open_stream_file(const StdStream& spec, const char* which) {
  namespace fs = std::filesystem;
  const fs::path parent = fs::path(spec.path).parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    fs::create_directories(parent, ec);
    if (ec) {
      throw BadStdStreamFile(fmt::format("cannot open {} file '{}': cannot create directory '{}': {}", which,
                                         spec.path, parent.string(), ec.message()));
    }
  }
  const int flags = O_WRONLY | O_CREAT | O_CLOEXEC | O_NOCTTY | (spec.append ? O_APPEND : O_TRUNC);
  int fd;
  do {
    fd = ::open(spec.path.c_str(), flags, 0644);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) throw_stream_error(which, spec.path, "", errno);
  Fd owned(fd);
  if (fd < 3) {
    // 0/1/2 were closed in this process; move out of the way so dup2 onto 1/2 in the child
    // cannot overwrite the other stream's descriptor.
    const int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (moved < 0) throw_stream_error(which, spec.path, "cannot move descriptor: ", errno);
    owned = Fd(moved);
  }
  return owned;
}

using detail::check_spawn;
using detail::SpawnAttr;
using detail::SpawnFileActions;


// Milliseconds from now until the deadline, rounded up, clamped to [1, INT_MAX].
int ms_until(Clock::time_point now, Clock::time_point deadline) {
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(deadline - now).count();
  return static_cast<int>(std::clamp<long long>(ms, 1, INT_MAX));
}

void sleep_for_ms(int ms) {
  timespec ts{ms / 1000, static_cast<long>(ms % 1000) * 1000000L};
  while (::nanosleep(&ts, &ts) < 0 && errno == EINTR) {
  }
}

}  // namespace

// Locking protocol on pgid_ (shared with run_shell):
//   0        no command registered
//   pg > 0   command running in process group pg
//   -pg      request() is in the middle of kill(-pg): run_shell must not reap the leader (which
//            would free pg for reuse) until request() has put pg back.
// request() claims the group with a CAS, signals it, and restores it. run_shell withdraws the
// group with a CAS pg -> 0 before reaping, spinning (with sched_yield) only for the duration of
// a concurrent kill() system call.
void ShellInterrupt::request() {
  requested_.store(true);
  int pg = pgid_.load();
  while (pg > 0) {
    if (pgid_.compare_exchange_weak(pg, -pg)) {
      ::kill(-pg, SIGKILL);
      pgid_.store(pg);
      return;
    }
    // On failure pg holds the current value: 0 (nothing running), -pg (another request() is
    // already killing it) or pg again after a spurious failure (retry).
  }
}

// Assumptions about the ShellInterrupt, if given:
//  * it is used by at most one run_shell at a time (sequential reuse only);
//  * a request is sticky: once requested(), every later run_shell with it is interrupted
//    immediately (without starting the command) - use a fresh ShellInterrupt per task.
ShellResult run_shell(const ShellCommand& cmd, ShellInterrupt* interrupt) {
  constexpr int kKilledExitCode = 128 + SIGKILL;

  if (interrupt != nullptr && interrupt->requested_.load()) {
    ShellResult r;
    r.exit_code = kKilledExitCode;
    r.interrupted = true;
    return r;
  }

  // --- Stream files (parent side, so errors surface here) ---------------------------------
  Fd out_fd;
  Fd err_fd;
  bool err_shares_out = false;
  if (!cmd.stdout_spec.path.empty()) out_fd = open_stream_file(cmd.stdout_spec, "stdout");
  if (!cmd.stderr_spec.path.empty()) {
    // Same file for both streams (compared by inode, so "x" and "./x" or a symlink also
    // count): share ONE open file description, as `cmd >f 2>&1` would, so the two streams do
    // not overwrite each other at independent offsets.
    struct stat so {}, se {};
    if (out_fd.valid() && ::fstat(out_fd.get(), &so) == 0 && ::stat(cmd.stderr_spec.path.c_str(), &se) == 0 &&
        so.st_dev == se.st_dev && so.st_ino == se.st_ino) {
      err_shares_out = true;
      // Keep the content effect of opening the file twice: a truncating stderr spec still
      // truncates a file that stdout opened for appending.
      if (!cmd.stderr_spec.append && cmd.stdout_spec.append && S_ISREG(so.st_mode)) {
        if (::ftruncate(out_fd.get(), 0) != 0) throw_stream_error("stderr", cmd.stderr_spec.path, "", errno);
      }
    } else {
      err_fd = open_stream_file(cmd.stderr_spec, "stderr");
    }
  }

  // --- Working directory ----------------------------------------------------------------
  if (!cmd.working_dir.empty()) {
    struct stat st {};
    if (::stat(cmd.working_dir.c_str(), &st) != 0)
      throw Error(fmt::format("working directory '{}' is not usable: {}", cmd.working_dir, os_error(errno)));
    if (!S_ISDIR(st.st_mode))
      throw Error(fmt::format("working directory '{}' is not usable: {}", cmd.working_dir, os_error(ENOTDIR)));
  }

  // --- Spawn ----------------------------------------------------------------------------
  SpawnFileActions fa;
  if (!cmd.working_dir.empty())
    check_spawn(posix_spawn_file_actions_addchdir_np(&fa.fa, cmd.working_dir.c_str()), "posix_spawn_file_actions_addchdir_np");
  // Our fds are >= 3, so dup2 always changes the descriptor number and the copy on 1/2 loses
  // FD_CLOEXEC while the original is closed by exec.
  if (out_fd.valid()) check_spawn(posix_spawn_file_actions_adddup2(&fa.fa, out_fd.get(), STDOUT_FILENO), "adddup2");
  const int err_src = err_shares_out ? out_fd.get() : err_fd.get();
  if (err_src >= 0) check_spawn(posix_spawn_file_actions_adddup2(&fa.fa, err_src, STDERR_FILENO), "adddup2");

  SpawnAttr attr;
  check_spawn(detail::reset_child_signals(attr, POSIX_SPAWN_SETSID), "posix_spawnattr setup");

  char arg0[] = "/bin/bash";
  char arg1[] = "-c";
  char* argv[] = {arg0, arg1, const_cast<char*>(cmd.command.c_str()), nullptr};
  pid_t pid = 0;
  if (int rc = posix_spawn(&pid, "/bin/bash", &fa.fa, &attr.attr, argv, environ); rc != 0) {
    if (!cmd.working_dir.empty())
      throw Error(fmt::format("cannot start /bin/bash in working directory '{}' for command '{}': {}",
                              cmd.working_dir, cmd.command, os_error(rc)));
    throw Error(fmt::format("cannot start /bin/bash for command '{}': {}", cmd.command, os_error(rc)));
  }
  // From here on nothing may throw before the child is reaped.
  const pid_t pgid = pid;  // setsid: the child leads its own session and process group
  out_fd.reset();          // the child has its own copies
  err_fd.reset();

  // Publish the group, then look at requested_. request() does the opposite (sets requested_,
  // then reads pgid_); with sequentially consistent atomics at least one side sees the other,
  // so a request that raced with the spawn is never lost.
  if (interrupt != nullptr) {
    interrupt->pgid_.store(pgid);
    if (interrupt->requested_.load()) ::kill(-pgid, SIGKILL);
  }

  std::optional<Clock::time_point> deadline;
  const double walltime_s = cmd.walltime.count();
  // <= 0 or NaN: no limit; absurdly large values (would overflow the clock) are no limit too.
  if (walltime_s > 0 && walltime_s < 1e9)
    deadline = Clock::now() + std::chrono::ceil<Clock::duration>(cmd.walltime);

  Fd pidfd;
  if (!detail::g_shell_disable_pidfd.load()) {
    const long r = ::syscall(SYS_pidfd_open, static_cast<long>(pid), 0L);
    if (r >= 0) pidfd = Fd(static_cast<int>(r));  // pidfds are always close-on-exec
    // Any failure (ENOSYS on old kernels, EPERM under some seccomp profiles, EMFILE, ...):
    // fall back to polling with waitid below.
  }

  // --- Wait until the leader has terminated (not reaped yet) --------------------------------
  bool timed_out = false;
  for (;;) {
    int timeout_ms = -1;
    if (deadline && !timed_out) {
      const auto now = Clock::now();
      if (now >= *deadline) {
        if (has_exited(pid)) break;  // finished right at the deadline: not a timeout
        ::kill(-pgid, SIGKILL);
        timed_out = true;
        continue;  // now wait (without limit) for the leader to die
      }
      timeout_ms = ms_until(now, *deadline);
    }
    if (pidfd.valid()) {
      pollfd p{pidfd.get(), POLLIN, 0};
      const int r = ::poll(&p, 1, timeout_ms);
      if (r > 0) break;
      if (r == 0 || errno == EINTR) continue;
      pidfd.reset();  // unexpected poll failure (ENOMEM): continue with the polling fallback
    } else {
      if (has_exited(pid)) break;
      sleep_for_ms(timeout_ms < 0 ? 10 : std::min(timeout_ms, 10));
    }
  }
  pidfd.reset();

  // Kill whatever the command left behind in its group (background jobs, daemons that did
  // not call setsid). The zombie leader keeps the group id reserved, so this is safe.
  ::kill(-pgid, SIGKILL);

  // Withdraw the group from the interrupt before reaping frees the id for reuse.
  bool interrupted = false;
  if (interrupt != nullptr) {
    int expected = pgid;
    while (!interrupt->pgid_.compare_exchange_weak(expected, 0)) {
      if (expected != -pgid && expected != pgid) break;  // contract violated (concurrent reuse): don't spin
      expected = pgid;
      sched_yield();  // a concurrent request() is inside its kill() call
    }
    interrupted = !timed_out && interrupt->requested_.load();
  }

  // --- Reap ----------------------------------------------------------------------------
  int status = 0;
  pid_t w;
  do {
    w = ::waitpid(pid, &status, 0);
  } while (w < 0 && errno == EINTR);

  ShellResult result;
  result.timed_out = timed_out;
  result.interrupted = interrupted;
  if (w < 0) {
    const int err = errno;
    if (timed_out || interrupted) {
      result.exit_code = kKilledExitCode;
      return result;
    }
    throw Error(fmt::format("lost the exit status of command '{}' (pid {}): {} (is SIGCHLD ignored, or is "
                            "another thread reaping children?)",
                            cmd.command, pid, os_error(err)));
  }
  if (WIFEXITED(status))
    result.exit_code = WEXITSTATUS(status);
  else if (WIFSIGNALED(status))
    result.exit_code = 128 + WTERMSIG(status);
  if (timed_out) result.exit_code = kKilledExitCode;
  return result;
}

}  // namespace pervade
