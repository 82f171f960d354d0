// LocalProvider: blocks are process trees on this machine.
//
// Design notes
// ------------
// * A block is `/bin/bash -c <script>` started with posix_spawn and POSIX_SPAWN_SETSID (as
//   run_shell does): it leads a new session and process group whose id is its pid, so
//   kill(-pid) reaches every process of the block that did not leave the group on purpose.
//   Its stdin is /dev/null, stdout and stderr are appended to the log file.
// * One monitor thread per provider (started with the first block) waits in poll() on a pidfd
//   per running block and an eventfd that submit()/cancel()/the destructor ring. Only the
//   monitor reaps, and only under the mutex, and every kill(-pgid) happens under the same
//   mutex while the leader is not yet reaped: an unreaped leader (at worst a zombie) keeps
//   the group id reserved, so a signal can never reach a recycled group.
// * A block ends in two steps. When its leader (the bash) has exited, whatever is left of its
//   group gets SIGTERM and is given cancel_grace to go (pervade-pool uses that time to stop
//   its workers and shell commands, which live in process groups of their own); the group is
//   SIGKILLed at the deadline. Only then is the leader reaped and the block reported ended.
//   cancel() starts the same sequence by sending SIGTERM to the whole group at once. There is
//   no event for "the group is empty", so while a block waits for its remaining members the
//   monitor looks at /proc every 20 ms, bounded by the deadline.
// * Without pidfd_open (kernels < 5.3, some seccomp profiles) the monitor checks running
//   leaders with waitid(WNOHANG|WNOWAIT) every 20 ms instead.
// * The program must not reap our children behind our back (SIGCHLD = SIG_IGN, waitpid(-1));
//   if that happens the block is reported FAILED with "exit status lost" and its group is not
//   signalled any more (the id may have been reused).
#include "pervade/provider.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <condition_variable>
#include <system_error>
#include <thread>
#include <unordered_map>

#include <fmt/format.h>

#include "pervade/errors.hpp"
#include "util/fd.hpp"
#include "util/private_files.hpp"
#include "util/process.hpp"
#include "util/spawn.hpp"
#include "util/thread_name.hpp"

extern char** environ;

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434  // same number on every architecture
#endif

namespace pervade {

namespace {

using Clock = std::chrono::steady_clock;
using detail::Fd;

constexpr int kScanIntervalMs = 20;  // /proc scans and the no-pidfd fallback

using detail::os_error;

int ms_until(Clock::time_point now, Clock::time_point deadline) {
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(deadline - now).count();
  return static_cast<int>(std::clamp<long long>(ms, 0, INT_MAX));
}

// -1 (wait forever) is the identity of this min.
int min_timeout(int a, int b) {
  if (a < 0) return b;
  if (b < 0) return a;
  return std::min(a, b);
}

// Whether a live process other than `pgid` itself belongs to process group `pgid`. Zombies do
// not count (they hold nothing and cannot be signalled away). If /proc cannot be read the
// answer is "yes", so the block waits for its deadline and the group is SIGKILLed.
bool group_has_other_members(pid_t pgid) {
  DIR* dir = ::opendir("/proc");
  if (dir == nullptr) return true;
  bool found = false;
  while (dirent* e = ::readdir(dir)) {
    char* end = nullptr;
    const long pid = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0' || pid == pgid) continue;
    char path[64];
    std::snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    char buf[512];
    const ssize_t n = ::read(fd, buf, sizeof buf - 1);
    ::close(fd);
    if (n <= 0) continue;
    buf[n] = '\0';
    // "pid (comm) S ppid pgrp ..."; comm may contain ')' and spaces.
    const char* paren = std::strrchr(buf, ')');
    if (paren == nullptr) continue;
    char state = 0;
    long ppid = 0, pgrp = 0;
    if (std::sscanf(paren + 1, " %c %ld %ld", &state, &ppid, &pgrp) != 3) continue;
    if (pgrp == pgid && state != 'Z' && state != 'X') {
      found = true;
      break;
    }
  }
  ::closedir(dir);
  return found;
}

// The log file, opened in the parent so that errors surface in submit(); O_CLOEXEC and >= 3
// (so that dup2 onto 1 and 2 in the child never clobbers it).
Fd open_log(const std::string& path) {
  namespace fs = std::filesystem;
  const fs::path parent = fs::path(path).parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    if (!detail::create_private_directories(parent, ec))
      throw Error(fmt::format("cannot create the directory of block log '{}': {}", path, ec.message()));
  }
  int fd;
  do {
    fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0600);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) throw Error(fmt::format("cannot open block log '{}': {}", path, os_error(errno)));
  Fd owned(fd);
  if (fd < 3) {
    const int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (moved < 0) throw Error(fmt::format("cannot move the descriptor of block log '{}': {}", path, os_error(errno)));
    owned = Fd(moved);
  }
  return owned;
}

using detail::check_spawn;
using detail::SpawnAttr;
using detail::SpawnFileActions;

enum class Phase { running, stopping, ended };

struct Job {
  std::string name;
  std::string log_path;
  pid_t pid = 0;  // also the process group id
  Fd pidfd;
  Phase phase = Phase::running;
  bool leader_exited = false;
  bool cancelled = false;   // cancel() reached it while its leader still ran
  bool killed = false;      // the group got SIGKILL
  bool lost = false;        // the exit status was reaped elsewhere
  Clock::time_point deadline;  // stopping: SIGKILL then
  JobStatus status;         // final once phase == ended
};

}  // namespace

struct LocalProvider::Impl {
  std::chrono::duration<double> grace;
  mutable std::mutex mutex;
  std::condition_variable ended;  // a job reached Phase::ended
  std::unordered_map<std::string, Job> jobs;
  std::vector<std::string> order;  // job ids in submit order
  Fd wake;                         // eventfd: the monitor re-reads the job table
  std::thread monitor;
  bool monitoring = false;  // the monitor thread runs; it ends when no job is left to watch
  bool closing = false;

  void ring() {
    const std::uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wake.get(), &one, sizeof one);
  }

  Clock::duration grace_duration() const { return std::chrono::ceil<Clock::duration>(grace); }

  // Under the mutex: SIGTERM to the group, SIGKILL at the deadline.
  void begin_stopping(Job& j, Clock::time_point now) {
    j.phase = Phase::stopping;
    j.deadline = now + grace_duration();
    if (!j.lost) ::kill(-j.pid, SIGTERM);
  }

  // Under the mutex: moves a job on; true if it ended.
  bool advance(Job& j, Clock::time_point now) {
    if (!j.leader_exited && detail::has_exited(j.pid, &j.lost)) {
      j.leader_exited = true;
      j.pidfd.reset();
      if (j.phase == Phase::running) begin_stopping(j, now);  // the rest of the group
    }
    if (j.phase != Phase::stopping) return false;
    if (!j.killed && !j.lost && now >= j.deadline) {
      ::kill(-j.pid, SIGKILL);
      j.killed = true;
    }
    if (!j.leader_exited) return false;
    if (!j.lost && !j.killed && group_has_other_members(j.pid)) return false;
    reap(j);
    return true;
  }

  void reap(Job& j) {
    JobStatus& s = j.status;
    int wstatus = 0;
    pid_t w = -1;
    if (!j.lost) {
      do {
        w = ::waitpid(j.pid, &wstatus, 0);  // a zombie by now: does not block
      } while (w < 0 && errno == EINTR);
    }
    j.phase = Phase::ended;
    if (w < 0) {
      s.state = j.cancelled ? JobState::cancelled : JobState::failed;
      s.message = "exit status lost (the process was reaped elsewhere: is SIGCHLD ignored?)";
      return;
    }
    if (WIFEXITED(wstatus)) {
      s.exit_code = WEXITSTATUS(wstatus);
      s.message = fmt::format("exit code {}", *s.exit_code);
    } else if (WIFSIGNALED(wstatus)) {
      s.exit_code = 128 + WTERMSIG(wstatus);
      s.message = fmt::format("killed by signal {}", WTERMSIG(wstatus));
    }
    if (j.cancelled) {
      s.state = JobState::cancelled;
      s.message = "cancelled; " + s.message;
    } else {
      s.state = s.exit_code == 0 ? JobState::completed : JobState::failed;
    }
  }

  void monitor_loop() {
    std::unique_lock lock(mutex);
    std::vector<pollfd> fds;
    for (;;) {
      // No thread is left behind while the provider has nothing to watch (a provider object
      // outlives its executor in a Python config); submit() starts the next one.
      const bool watching = std::any_of(jobs.begin(), jobs.end(),
                                        [](const auto& kv) { return kv.second.phase != Phase::ended; });
      if (closing || !watching) {
        monitoring = false;
        return;
      }
      fds.assign(1, pollfd{wake.get(), POLLIN, 0});
      int timeout = -1;
      auto now = Clock::now();
      for (auto& [id, j] : jobs) {
        if (j.phase == Phase::ended) continue;
        if (!j.leader_exited) {
          if (j.pidfd.valid())
            fds.push_back(pollfd{j.pidfd.get(), POLLIN, 0});
          else
            timeout = min_timeout(timeout, kScanIntervalMs);
        }
        if (j.phase == Phase::stopping) {
          if (!j.killed) timeout = min_timeout(timeout, ms_until(now, j.deadline));
          if (j.leader_exited) timeout = min_timeout(timeout, kScanIntervalMs);
        }
      }
      // Only this thread closes pidfds, so they stay valid while it polls without the lock.
      lock.unlock();
      int r;
      do {
        r = ::poll(fds.data(), fds.size(), timeout);
      } while (r < 0 && errno == EINTR);
      if (fds[0].revents & POLLIN) {
        std::uint64_t v;
        [[maybe_unused]] ssize_t n = ::read(wake.get(), &v, sizeof v);
      }
      lock.lock();
      now = Clock::now();
      bool any = false;
      for (auto& [id, j] : jobs)
        if (j.phase != Phase::ended) any = advance(j, now) || any;
      if (any) ended.notify_all();
    }
  }
};

LocalProvider::LocalProvider(ProviderOptions options, std::chrono::duration<double> cancel_grace)
    : Provider("local", std::move(options)), impl_(std::make_unique<Impl>()) {
  if (!(cancel_grace.count() >= 0 && cancel_grace.count() < 1e6))
    throw ConfigurationError("LocalProvider cancel_grace must be between 0 and 1e6 seconds");
  impl_->grace = cancel_grace;
  const int efd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (efd < 0) throw Error(fmt::format("eventfd: {}", os_error(errno)));
  impl_->wake = Fd(efd);
}

LocalProvider::~LocalProvider() {
  try {
    cancel(job_ids());
  } catch (...) {
    // cancel() does not throw for known jobs; nothing useful to do in a destructor anyway.
  }
  {
    std::lock_guard lock(impl_->mutex);
    impl_->closing = true;
  }
  impl_->ring();
  if (impl_->monitor.joinable()) impl_->monitor.join();
}

std::string LocalProvider::submit(const std::string& command, int tasks_per_node, const std::string& job_name,
                                  const std::string& log_path) {
  const std::string script = block_script(command, tasks_per_node);
  Fd log;
  if (!log_path.empty()) log = open_log(log_path);

  SpawnFileActions fa;
  check_spawn(posix_spawn_file_actions_addopen(&fa.fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0), "addopen");
  if (log.valid()) {
    check_spawn(posix_spawn_file_actions_adddup2(&fa.fa, log.get(), STDOUT_FILENO), "adddup2");
    check_spawn(posix_spawn_file_actions_adddup2(&fa.fa, log.get(), STDERR_FILENO), "adddup2");
  } else {
    check_spawn(posix_spawn_file_actions_addopen(&fa.fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0), "addopen");
    check_spawn(posix_spawn_file_actions_adddup2(&fa.fa, STDOUT_FILENO, STDERR_FILENO), "adddup2");
  }
  SpawnAttr attr;
  check_spawn(detail::reset_child_signals(attr, POSIX_SPAWN_SETSID), "posix_spawnattr setup");

  char arg0[] = "/bin/bash";
  char arg1[] = "-c";
  char* argv[] = {arg0, arg1, const_cast<char*>(script.c_str()), nullptr};

  auto& im = *impl_;
  std::lock_guard lock(im.mutex);  // the monitor must not see a half-registered job
  if (im.closing) throw Error("LocalProvider is being destroyed");
  if (!im.monitoring) {
    // The previous monitor cleared `monitoring` just before returning: joining it does not
    // wait on this mutex.
    if (im.monitor.joinable()) im.monitor.join();
    im.monitoring = true;
    Impl* raw = impl_.get();
    im.monitor = std::thread([raw] {
      detail::name_this_thread("pv-provider");
      raw->monitor_loop();
    });
  }
  pid_t pid = 0;
  if (int rc = posix_spawn(&pid, "/bin/bash", &fa.fa, &attr.attr, argv, environ); rc != 0)
    throw Error(fmt::format("cannot start block '{}' (/bin/bash): {}", job_name, os_error(rc)));
  Job j;
  j.name = job_name;
  j.log_path = log_path;
  j.pid = pid;
  j.status.state = JobState::running;
  j.status.log_path = log_path;
  const long r = ::syscall(SYS_pidfd_open, static_cast<long>(pid), 0L);
  if (r >= 0) j.pidfd = Fd(static_cast<int>(r));  // else: the monitor polls with waitid
  // The pid names the job (as Parsl's LocalProvider does); a pid of an ended job may come
  // back, and an id must not.
  std::string id = std::to_string(pid);
  for (int n = 1; im.jobs.contains(id); ++n) id = fmt::format("{}.{}", pid, n);
  im.jobs.emplace(id, std::move(j));
  im.order.push_back(id);
  im.ring();
  return id;
}

std::vector<JobStatus> LocalProvider::status(const std::vector<std::string>& job_ids) {
  std::vector<JobStatus> out;
  out.reserve(job_ids.size());
  std::lock_guard lock(impl_->mutex);
  for (const auto& id : job_ids) {
    auto it = impl_->jobs.find(id);
    if (it == impl_->jobs.end()) {
      out.push_back(JobStatus{JobState::missing, "no such job", std::nullopt, ""});
      continue;
    }
    const Job& j = it->second;
    if (j.phase == Phase::ended) {
      out.push_back(j.status);
    } else {
      JobStatus s;
      s.state = JobState::running;
      s.log_path = j.log_path;
      if (j.phase == Phase::stopping) s.message = j.cancelled ? "cancelling" : "stopping what is left of the block";
      out.push_back(std::move(s));
    }
  }
  return out;
}

std::vector<bool> LocalProvider::cancel(const std::vector<std::string>& job_ids) {
  auto& im = *impl_;
  std::unique_lock lock(im.mutex);
  const auto now = Clock::now();
  for (const auto& id : job_ids) {
    auto it = im.jobs.find(id);
    if (it == im.jobs.end()) continue;
    Job& j = it->second;
    if (j.phase == Phase::running) {
      j.cancelled = true;
      im.begin_stopping(j, now);
    }
  }
  im.ring();
  // The monitor SIGKILLs at the grace deadline; a SIGKILLed group goes at once unless a
  // process is stuck in the kernel. Give up (and say so in the result) well after that.
  const auto give_up = now + im.grace_duration() + std::chrono::seconds(10);
  auto all_ended = [&] {
    for (const auto& id : job_ids) {
      auto it = im.jobs.find(id);
      if (it != im.jobs.end() && it->second.phase != Phase::ended) return false;
    }
    return true;
  };
  im.ended.wait_until(lock, give_up, all_ended);
  std::vector<bool> out;
  out.reserve(job_ids.size());
  for (const auto& id : job_ids) {
    auto it = im.jobs.find(id);
    out.push_back(it != im.jobs.end() && it->second.phase == Phase::ended);
  }
  return out;
}

bool LocalProvider::wait(const std::vector<std::string>& job_ids, std::chrono::duration<double> timeout) {
  auto& im = *impl_;
  std::unique_lock lock(im.mutex);
  return im.ended.wait_for(lock, timeout, [&] {
    for (const auto& id : job_ids) {
      auto it = im.jobs.find(id);
      if (it != im.jobs.end() && it->second.phase != Phase::ended) return false;
    }
    return true;
  });
}

std::vector<std::string> LocalProvider::job_ids() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->order;
}

}  // namespace pervade
