// pervade-pool: the per-node process of the HighThroughputExecutor.
//
// Design notes
// ------------
// * One thread (the caller of run_pool) owns everything: the DEALER socket, the workers, the
//   task queue. It sleeps in zmq::poll over the DEALER, a signalfd, an eventfd (shell results)
//   and every worker's socket, with a timeout to the next heartbeat deadline. The only other
//   threads are libzmq's and the shell thread pool, which never touch pool state; they hand
//   finished shell tasks back under a mutex and wake the loop through the eventfd.
// * Signals: SIGCHLD, SIGTERM, SIGINT and SIGHUP are blocked in every thread (before any
//   thread exists) and read from a signalfd, so they are ordinary events of the loop. Children
//   are started with an empty signal mask and default dispositions.
// * Workers are reaped only by pid (waitid/waitpid on each worker's own pid), never with
//   waitpid(-1): run_shell reaps its own children on the shell threads and must not have them
//   stolen.
// * Each worker leads its own process group (POSIX_SPAWN_SETPGROUP), so the pool can kill the
//   worker together with whatever it started (kill(-pid)). A worker is detected as dead with
//   waitid(WNOWAIT) first; its group is then SIGKILLed while the zombie leader still reserves
//   the group id (so the kill cannot hit a recycled group) and only then is it reaped.
// * A worker that dies, closes its socket, or sends a malformed frame is killed (if needed),
//   reaped, its task (if any) answered with status 2 (kStatusWorkerLost) and the text of what
//   the pool saw, and a replacement with the same rank is started. A worker may hold a second,
//   not yet started task (see dispatch()); that one goes back to the pool's queue. kMaxStartFailures deaths in
//   a row without READY mean the Python environment is broken: the pool tells the interchange
//   (FAILED, with what the interpreter prints) and exits kExitBrokenWorkers.
// * Writes to workers are non-blocking with a per-worker output buffer (POLLOUT while it is not
//   empty), so a stuck worker cannot stall the pool. Messages to the interchange are sent with
//   ZMQ_DONTWAIT; what does not fit under the high-water mark waits in a queue for POLLOUT.
// * Every descriptor the pool opens is close-on-exec, and descriptors inherited from the
//   pool's parent are made close-on-exec at start, so a worker gets exactly 0, 1, 2 and its
//   socket on fd 3.
#include "util/fd.hpp"
#include "util/private_files.hpp"
#include "util/spawn.hpp"
#include "util/process.hpp"
#include "util/same_host.hpp"
#include "pool/exex_remote.hpp"
#include "pool/mpi_discovery.hpp"
#include "pool/pool.hpp"
#include "pool/pool_core.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <climits>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include <fmt/format.h>
#include <zmq.hpp>

#include "observe/proc_usage.hpp"
#include "pervade/errors.hpp"
#include "pervade/observer.hpp"
#include "pervade/shell.hpp"
#include "protocol/messages.hpp"

#ifndef PERVADE_VERSION
#define PERVADE_VERSION "unknown"
#endif

extern char** environ;

namespace pervade::pool {

namespace {

namespace proto = pervade::protocol;

constexpr int kMaxStartFailures = 5;
constexpr int kWorkerSocketBuffer = 4 << 20;  // SO_SNDBUF of the worker sockets
constexpr auto kKillGrace = std::chrono::seconds(2);  // SIGTERM -> SIGKILL
constexpr auto kDrainLinger = std::chrono::milliseconds(2000);  // to deliver DRAINED or FAILED
constexpr std::size_t kMaxWorkerFrame = std::size_t{1} << 31;
// A worker whose socket reached EOF is normally exiting; it is given this long to do so (and
// be reported with its own exit status) before the pool kills it.
constexpr auto kEofGrace = std::chrono::seconds(1);
// A killed worker's bash command gets SIGTERM, then SIGKILL this much later: launchers such as
// srun and mpiexec stop their ranks on other nodes only when they are asked to (SIGKILL would
// leave them running there).
constexpr auto kCommandStopGrace = std::chrono::seconds(3);
// A closed connection to the interchange (its process died) ends the pool after this long
// without a reconnection (or the heartbeat threshold, if shorter).
constexpr auto kDisconnectGrace = std::chrono::seconds(5);
constexpr const char* kMonitorEndpoint = "inproc://pervade-pool-monitor";

using detail::os_error;

// ------------------------------------------------------------------------------ logging
class Logger {
 public:
  bool open(const std::string& path, std::string* error) {
    if (path.empty()) return true;
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) {
      *error = fmt::format("cannot open log file '{}': {}", path, os_error(errno));
      return false;
    }
    FILE* f = ::fdopen(fd, "a");
    if (f == nullptr) {
      *error = fmt::format("cannot open log file '{}': {}", path, os_error(errno));
      ::close(fd);
      return false;
    }
    file_ = f;
    return true;
  }

  // Every line also goes to `path` (appended): the pool's own file in its block's log directory.
  bool add_copy(const std::string& path, std::string* error) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    FILE* f = fd < 0 ? nullptr : ::fdopen(fd, "a");
    if (f == nullptr) {
      *error = fmt::format("cannot open log file '{}': {}", path, os_error(errno));
      if (fd >= 0) ::close(fd);
      return false;
    }
    std::lock_guard<std::mutex> lock(mu_);
    copy_ = f;
    return true;
  }

  // Lines below `level` (Python's level numbers) are not written.
  void set_level(int level) { level_ = level; }
  bool enabled(int level) const { return level >= level_; }

  void write(const char* level, const std::string& message) {
    const auto now = std::chrono::system_clock::now();
    const std::time_t t = std::chrono::system_clock::to_time_t(now);
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
    std::tm tm{};
    ::localtime_r(&t, &tm);
    char stamp[32];
    std::strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &tm);
    std::lock_guard<std::mutex> lock(mu_);
    for (FILE* f : {file_, copy_}) {
      if (f == nullptr) continue;
      std::fprintf(f, "%s.%03d %s pervade-pool[%d] %s\n", stamp, static_cast<int>(ms), level,
                   static_cast<int>(::getpid()), message.c_str());
      std::fflush(f);
    }
  }

 private:
  std::mutex mu_;
  FILE* file_ = stderr;
  FILE* copy_ = nullptr;
  int level_ = 20;
};

Logger& logger() {
  static Logger instance;
  return instance;
}

// Each checks the level before formatting: a debug line costs one branch when it is off.
template <typename... Args>
void log_debug(fmt::format_string<Args...> f, Args&&... args) {
  if (logger().enabled(10)) logger().write("DEBUG", fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void log_info(fmt::format_string<Args...> f, Args&&... args) {
  if (logger().enabled(20)) logger().write("INFO", fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void log_warn(fmt::format_string<Args...> f, Args&&... args) {
  if (logger().enabled(30)) logger().write("WARNING", fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void log_error(fmt::format_string<Args...> f, Args&&... args) {
  logger().write("ERROR", fmt::format(f, std::forward<Args>(args)...));
}

// ------------------------------------------------------------------------------ small helpers
using pervade::detail::Fd;
using pervade::detail::has_exited;

// Moves a close-on-exec descriptor to a number >= min_fd (so a dup2 onto a lower number in a
// child always changes the number and therefore drops FD_CLOEXEC on the copy).
bool move_fd_at_least(Fd& fd, int min_fd) {
  if (fd.get() >= min_fd) return true;
  const int moved = ::fcntl(fd.get(), F_DUPFD_CLOEXEC, min_fd);
  if (moved < 0) return false;
  fd = Fd(moved);
  return true;
}

// Descriptors inherited from our parent must not leak into workers and shell commands.
void mark_inherited_fds_cloexec() {
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return;
  const int own = ::dirfd(dir);
  while (dirent* e = ::readdir(dir)) {
    int fd = -1;
    const char* name = e->d_name;
    auto [ptr, ec] = std::from_chars(name, name + std::strlen(name), fd);
    if (ec != std::errc{} || *ptr != '\0' || fd < 3 || fd == own) continue;
    const int flags = ::fcntl(fd, F_GETFD);
    if (flags >= 0 && !(flags & FD_CLOEXEC)) ::fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
  }
  ::closedir(dir);
}

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "localhost";
  return buf;
}

std::string trim(std::string s) {
  const char* ws = " \t\r\n";
  const auto b = s.find_first_not_of(ws);
  if (b == std::string::npos) return {};
  const auto e = s.find_last_not_of(ws);
  return s.substr(b, e - b + 1);
}

}  // namespace

std::string describe_wait_status(int status) {
  if (WIFEXITED(status)) return fmt::format("exited with status {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    const char* name = ::strsignal(sig);
    return fmt::format("died with signal {} ({}){}", sig, name ? name : "?", WCOREDUMP(status) ? ", core dumped" : "");
  }
  return fmt::format("ended with wait status {}", status);
}

std::vector<pid_t> children_of(pid_t pid) {
  std::vector<pid_t> out;
  std::error_code ec;
  for (const auto& task : std::filesystem::directory_iterator(fmt::format("/proc/{}/task", pid), ec)) {
    std::ifstream in(task.path() / "children");
    for (pid_t child; in >> child;) out.push_back(child);
  }
  return out;
}

namespace {

// Milliseconds until `deadline`, rounded up, clamped to [0, INT_MAX].
long ms_until(Clock::time_point deadline, Clock::time_point now = Clock::now()) {
  if (deadline <= now) return 0;
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(deadline - now).count();
  return static_cast<long>(std::min<long long>(ms, INT_MAX));
}

Clock::duration seconds(double s) {
  s = std::clamp(s, 0.0, 1e8);  // avoid overflowing the clock
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

using detail::SpawnAttr;
using detail::SpawnFileActions;

// Runs `python -c prog` with its stdout and stderr into one pipe, for at most 60 s. Returns
// its wait status and sets *output to the last 4 KiB it printed; nullopt (and *error) when it
// could not be started or did not finish in time.
std::optional<int> run_python(const std::string& python, const std::string& prog, std::string* output,
                              std::string* error) {
  constexpr std::size_t kKeep = 4096;
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) {
    *error = fmt::format("pipe2: {}", os_error(errno));
    return std::nullopt;
  }
  Fd rd(p[0]);
  Fd wr(p[1]);
  if (!move_fd_at_least(wr, 3)) {
    *error = fmt::format("fcntl: {}", os_error(errno));
    return std::nullopt;
  }
  SpawnFileActions fa;
  posix_spawn_file_actions_adddup2(&fa.fa, wr.get(), STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&fa.fa, wr.get(), STDERR_FILENO);
  SpawnAttr attr;
  if (int rc = detail::reset_child_signals(attr, POSIX_SPAWN_SETPGROUP)) {
    *error = fmt::format("posix_spawnattr: {}", os_error(rc));
    return std::nullopt;
  }
  std::string code = prog;
  std::vector<char*> argv{const_cast<char*>(python.c_str()), const_cast<char*>("-c"), code.data(), nullptr};
  pid_t pid = 0;
  if (int rc = posix_spawnp(&pid, python.c_str(), &fa.fa, &attr.attr, argv.data(), environ)) {
    *error = fmt::format("cannot run '{}': {}", python, os_error(rc));
    return std::nullopt;
  }
  wr.reset();
  std::string& out = *output;
  out.clear();
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  bool timed_out = false;
  for (;;) {
    pollfd pfd{rd.get(), POLLIN, 0};
    const long ms = ms_until(deadline);
    if (ms == 0) {
      timed_out = true;
      break;
    }
    const int r = ::poll(&pfd, 1, static_cast<int>(ms));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) continue;
    char buf[512];
    const ssize_t n = ::read(rd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
    if (out.size() > 2 * kKeep) out.erase(0, out.size() - kKeep);
  }
  if (out.size() > kKeep) out.erase(0, out.size() - kKeep);
  if (timed_out) ::kill(-pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    *error = fmt::format("'{}' did not finish within 60 s", python);
    return std::nullopt;
  }
  return status;
}

// Asks the interpreter for its version: `python -c 'import platform;print(platform.python_version())'`.
std::optional<std::string> query_python_version(const std::string& python, std::string* error) {
  const std::string prog = "import platform;print(platform.python_version())";
  std::string out;
  const std::optional<int> status = run_python(python, prog, &out, error);
  if (!status) return std::nullopt;
  if (!WIFEXITED(*status) || WEXITSTATUS(*status) != 0) {
    *error = fmt::format("'{} -c \"{}\"' {}: {}", python, prog, describe_wait_status(*status), trim(out));
    return std::nullopt;
  }
  // The version is the last line (a warning may come first on stderr).
  out = trim(out);
  out.erase(0, out.find_last_of('\n') == std::string::npos ? 0 : out.find_last_of('\n') + 1);
  if (out.empty() || !std::isdigit(static_cast<unsigned char>(out[0]))) {
    *error = fmt::format("'{}' printed an unexpected version '{}'", python, out);
    return std::nullopt;
  }
  return out;
}

// Why workers cannot start with this interpreter, for the FAILED message: what
// `python -c 'import pervade.worker'` says (the traceback of a missing or broken pervade), or
// that the interpreter cannot run at all.
std::string diagnose_worker_interpreter(const std::string& python) {
  const std::string prog = "import pervade.worker";
  std::string out, error;
  const std::optional<int> status = run_python(python, prog, &out, &error);
  if (!status) return error;
  out = trim(out);
  if (WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
    return fmt::format("'{}' imports pervade.worker, but its workers died before they were ready{}", python,
                       out.empty() ? "" : ": " + out);
  return fmt::format("'{} -c \"{}\"' {}{}", python, prog, describe_wait_status(*status), out.empty() ? "" : ":\n" + out);
}

std::string read_key_line(const std::string& path, int line_no, std::string* error) {
  std::ifstream in(path);
  if (!in) {
    *error = fmt::format("cannot read key file '{}': {}", path, os_error(errno));
    return {};
  }
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    line = trim(line);
    if (line.empty()) continue;
    if (++n == line_no) {
      if (line.size() != 40) {
        *error = fmt::format("key file '{}': line {} is not a 40-character Z85 key", path, line_no);
        return {};
      }
      std::uint8_t decoded[32];
      if (zmq_z85_decode(decoded, line.c_str()) == nullptr) {
        *error = fmt::format("key file '{}': line {} is not valid Z85", path, line_no);
        return {};
      }
      return line;
    }
  }
  *error = fmt::format("key file '{}' has no key on line {}", path, line_no);
  return {};
}

// ------------------------------------------------------------------------------ shell tasks
// Runs shell tasks (kind 1) with pervade::run_shell on a fixed set of threads. Finished tasks
// are collected under the mutex and announced through `wake_fd` (an eventfd).
class ShellRunner {
 public:
  ShellRunner(int threads, int wake_fd) : wake_fd_(wake_fd) {
    for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { loop(); });
  }
  ~ShellRunner() { stop(); }
  ShellRunner(const ShellRunner&) = delete;
  ShellRunner& operator=(const ShellRunner&) = delete;

  void submit(std::uint64_t task_id, proto::Bytes payload) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(Job{task_id, std::move(payload)});
    }
    cv_.notify_one();
  }

  // Results finished since the last call.
  void take(std::vector<proto::TaskResult>* out) {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& r : results_) out->push_back(std::move(r));
    results_.clear();
  }

  // A queued task is dropped (and answered as cancelled); a running one has its process group
  // killed (its result follows as usual). False if the task is not here.
  bool cancel(std::uint64_t task_id) {
    bool found = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (auto r = running_.find(task_id); r != running_.end()) {
        r->second->request();
        return true;
      }
      auto q = std::find_if(queue_.begin(), queue_.end(), [&](const Job& j) { return j.task_id == task_id; });
      if (q != queue_.end()) {
        queue_.erase(q);
        results_.push_back(proto::TaskResult{task_id, proto::kStatusCancelled, "cancelled before it started"});
        found = true;
      }
    }
    if (found) {
      const std::uint64_t one = 1;
      [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof one);
    }
    return found;
  }

  // Drops queued tasks, kills running commands (their process groups) and joins the threads.
  void stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
      queue_.clear();
      for (auto& [id, interrupt] : running_) interrupt->request();
    }
    cv_.notify_all();
    for (auto& t : threads_)
      if (t.joinable()) t.join();
    threads_.clear();
  }

 private:
  struct Job {
    std::uint64_t task_id;
    proto::Bytes payload;
  };

  void loop() {
    for (;;) {
      Job job;
      auto interrupt = std::make_shared<ShellInterrupt>();
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
        if (stopping_) return;
        job = std::move(queue_.front());
        queue_.pop_front();
        running_[job.task_id] = interrupt;
      }
      const auto started = Clock::now();
      proto::TaskResult result = run(job, interrupt.get());
      result.run_time = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started);
      {
        std::lock_guard<std::mutex> lock(mu_);
        running_.erase(job.task_id);
        results_.push_back(std::move(result));
      }
      const std::uint64_t one = 1;
      [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof one);
    }
  }

  static proto::TaskResult run(const Job& job, ShellInterrupt* interrupt) {
    proto::TaskResult r;
    r.task_id = job.task_id;
    const auto p = proto::decode_shell_payload(job.payload.data(), job.payload.size());
    if (!p) {
      log_warn("shell task {}: malformed payload ({} bytes)", job.task_id, job.payload.size());
      r.status = proto::kStatusException;
      r.payload = "malformed shell task payload";
      return r;
    }
    ShellCommand cmd;
    cmd.command = p->command;
    cmd.stdout_spec = StdStream{p->stdout_path, p->stdout_append};
    cmd.stderr_spec = StdStream{p->stderr_path, p->stderr_append};
    cmd.walltime = std::chrono::duration<double>(std::isfinite(p->walltime) ? p->walltime : 0.0);
    try {
      const ShellResult res = run_shell(cmd, interrupt);
      if (res.timed_out) {
        // The driver leaves walltime to the pool (its clock starts here, when the command starts):
        // the text tells the task body to fail the try with AppTimeout.
        log_info("shell task {} exceeded its walltime of {} s; its process group was killed", job.task_id,
                 p->walltime);
        r.status = proto::kStatusException;
        r.payload = fmt::format("{}{} s", proto::kShellWalltimeExceeded, p->walltime);
        return r;
      }
      r.status = proto::kStatusOk;
      r.payload = proto::encode_exit_code(res.exit_code);
    } catch (const std::exception& e) {
      r.status = proto::kStatusException;
      r.payload = e.what();
    }
    return r;
  }

  int wake_fd_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;
  std::unordered_map<std::uint64_t, std::shared_ptr<ShellInterrupt>> running_;
  std::vector<proto::TaskResult> results_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

// ------------------------------------------------------------------------------ the pool
// Bytes for a worker's socket that it did not take yet: pieces of frames (copied; small) and
// out-of-band buffers (shared with the ZeroMQ frames they arrived in; never copied).
struct OutQueue {
  // A piece of a frame (owned: small copies coalesce into the last one) or a shared buffer.
  struct Chunk {
    std::shared_ptr<std::string> owned;
    proto::SharedBuffer shared;
    const char* data() const { return owned ? owned->data() : shared.data; }
    std::size_t size() const { return owned ? owned->size() : shared.size; }
  };
  std::deque<Chunk> chunks;
  std::size_t offset = 0;  // already written of chunks.front()
  bool empty() const { return chunks.empty(); }
  void clear() {
    chunks.clear();
    offset = 0;
  }
  void push_copy(const char* data, std::size_t size) {
    if (size == 0) return;
    if (!chunks.empty() && chunks.back().owned)
      chunks.back().owned->append(data, size);
    else
      chunks.push_back({std::make_shared<std::string>(data, size), {}});
  }
  void push_shared(proto::SharedBuffer b) {
    if (b.size > 0) chunks.push_back({nullptr, std::move(b)});
  }
};

// A worker's process and socket; which tasks it holds is PoolCore's (by the same rank).
struct Worker {
  int rank = 0;
  pid_t pid = -1;  // -1: no process
  // On another rank (pervade-exex-pool): its process is there, and every signal and wait goes
  // through RemoteWorkers (slot `remote_slot`); pid is then kRemotePid while it runs.
  bool remote = false;
  int remote_slot = -1;
  Fd fd;           // our end of the socketpair
  proto::FrameReader reader{kMaxWorkerFrame};
  bool dying = false;  // killed by the pool; waiting to be reaped
  std::string kill_reason;
  std::optional<Clock::time_point> kill_at;  // its socket hit EOF: kill it then unless it exited
  OutQueue out;  // bytes not yet written to the socket
  // A RESULT whose out-of-band buffers are being read, straight into the ZeroMQ messages that
  // carry them on to the interchange: buffers[next] has `filled` bytes (those before it are
  // complete; a buffer has data once its message is allocated).
  struct IncomingResult {
    proto::WorkerResult result;
    std::size_t next = 0;
    std::size_t filled = 0;
  };
  std::optional<IncomingResult> incoming;
  // Resource sampling: its /proc/<pid>/stat, open while the process lives; its usage when its
  // running task started; the reading of its previous task's last sample, which is the first
  // reading of its next task, however long it waited (a waiting worker's counters do not move:
  // one /proc read per task, not two); and the running task's first sample, held until its next
  // sample and sent before it, unless that is the last of a task shorter than kFirstSampleAfter
  // (pervade/observer.hpp).
  Fd stat_fd;
  detail::ProcUsage usage_start;
  std::optional<detail::ProcUsage> end_reading;
  std::optional<proto::UsageSample> first_sample;
};

template <class... Ts>
struct Overloaded : Ts... {
  using Ts::operator()...;
};
template <class... Ts>
Overloaded(Ts...) -> Overloaded<Ts...>;

// Stands for a remote worker's process in Worker::pid: never signalled or waited for here.
constexpr pid_t kRemotePid = std::numeric_limits<pid_t>::max();

class Pool {
 public:
  Pool(PoolOptions options, int signal_fd, RemoteWorkers* remote)
      : o_(std::move(options)), signal_fd_(signal_fd), remote_(remote) {}
  ~Pool() { teardown(); }

  int run() {
    if (int status = setup(); status >= 0) return status;
    if (int status = register_with_interchange(); status >= 0) return status;
    if (int status = check_mpi_launcher(); status >= 0) return status;
    shell_ = std::make_unique<ShellRunner>(worker_count_, wake_fd_.get());
    PoolCoreConfig core{o_.pool_id, o_.no_python ? 0 : total_workers(), !o_.no_python, {node_capacity_}, {},
                        o_.affinity.mode != AffinityMode::kNone, std::move(mpi_block_)};
    core.stop_tasks_at = stop_tasks_at_;
    if (remote_) {  // each rank is a node of its own, whose slots follow those of the nodes before it
      core.slot_node.assign(static_cast<std::size_t>(worker_count_), 0);
      for (const RemoteNode& n : remote_->nodes()) {
        NodeCapacity c;
        for (int cpu = 0; cpu < n.cpus; ++cpu) c.cpus.push_back(cpu);
        c.memory_mb = n.memory_mb;
        core.nodes.push_back(std::move(c));
        core.slot_node.insert(core.slot_node.end(), static_cast<std::size_t>(n.workers),
                              static_cast<int>(core.nodes.size()) - 1);
      }
      remote_->set_wake_fd(wake_fd_.get());
    }
    core_ = PoolCore(std::move(core));
    if (!o_.no_python) {
      workers_.resize(static_cast<std::size_t>(total_workers()));
      for (int r = 0; r < total_workers() && !exit_status_; ++r) {
        Worker& w = workers_[static_cast<std::size_t>(r)];
        w.rank = r;
        w.remote = r >= worker_count_;
        w.remote_slot = w.remote ? r - worker_count_ : -1;
        start_worker(w);
      }
    }
    return main_loop();
  }

  // Kills and reaps everything; closes the socket. Idempotent.
  void teardown() {
    if (torn_down_) return;
    torn_down_ = true;
    if (shell_) shell_->stop();
    stop_workers();
    if (monitor_) {
      zmq_socket_monitor(dealer_.handle(), nullptr, 0);
      monitor_.close();
    }
    if (dealer_) {
      dealer_.set(zmq::sockopt::linger, linger_ms_);
      dealer_.close();
    }
    ctx_.close();
  }

 private:
  // ---------------------------------------------------------------- setup
  // --log-dir: this pool's directory there. Without it (a host that does not share the driver's
  // file system may refuse) the lines still go to the block's log.
  void open_log_dir() {
    if (o_.log_dir.empty()) return;
    const std::filesystem::path dir = std::filesystem::path(o_.log_dir) / o_.pool_id;
    std::error_code ec;
    std::string error;
    if (!detail::create_private_directories(dir, ec))
      error = fmt::format("cannot create log directory '{}': {}", dir.string(), ec.message());
    else if (logger().add_copy((dir / "pool.log").string(), &error))
      worker_log_dir_ = dir.string();
    if (!error.empty()) log_warn("{}; logging to the block's log only", error);
  }

  // Returns an exit status, or -1 to go on.
  int setup() {
    if (o_.walltime > 0) {  // the block's job started about now
      const auto start = Clock::now();
      block_end_ = start + seconds(o_.walltime);
      stop_tasks_at_ = start + seconds(std::max(0.0, o_.walltime - o_.walltime_grace));
    }
    if (o_.drain_period > 0) drain_at_ = Clock::now() + seconds(o_.drain_period);
    hostname_ = host_name();
    if (o_.pool_id.empty()) o_.pool_id = fmt::format("{}-{}", hostname_, ::getpid());
    open_log_dir();

    std::string error;
    if (int status = plan_workers_on_this_node(); status >= 0) return status;

    auto endpoint = zmq_endpoint(o_.address, &ipv6_, &error);
    if (!endpoint) {
      log_error("{}", error);
      return kExitUsage;
    }
    endpoint_ = *endpoint;
    if (!ipv6_) {
      // A host name with IPv6 addresses only needs ZMQ_IPV6 too. (Not set for names that have
      // IPv4 addresses: with it libzmq may prefer an IPv6 address the interchange does not
      // listen on, e.g. ::1 for "localhost".)
      const std::string host = endpoint_.substr(6, endpoint_.rfind(':') - 6);
      addrinfo hints{};
      hints.ai_family = AF_UNSPEC;
      hints.ai_socktype = SOCK_STREAM;
      addrinfo* res = nullptr;
      if (::getaddrinfo(host.c_str(), nullptr, &hints, &res) == 0) {
        bool v4 = false, v6 = false;
        for (addrinfo* a = res; a != nullptr; a = a->ai_next) {
          v4 = v4 || a->ai_family == AF_INET;
          v6 = v6 || a->ai_family == AF_INET6;
        }
        ::freeaddrinfo(res);
        ipv6_ = v6 && !v4;
      }
    }

    if (o_.no_python) {
      python_version_.clear();
    } else if (o_.python_version) {
      python_version_ = *o_.python_version;
    } else {
      auto v = query_python_version(o_.python, &error);
      if (!v) {
        log_error("cannot determine the Python version of the worker interpreter: {}; the Python environment "
                  "is broken (use --python PATH, --python-version X.Y.Z, or --no-python)",
                  error);
        return kExitBrokenWorkers;
      }
      python_version_ = *v;
    }

    const int efd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (efd < 0) {
      log_error("eventfd: {}", os_error(errno));
      return kExitError;
    }
    wake_fd_ = Fd(efd);

    dealer_ = zmq::socket_t(ctx_, zmq::socket_type::dealer);
    dealer_.set(zmq::sockopt::linger, 0);
    // Unbounded queues, as on the interchange's side: the interchange bounds what it sends to
    // the pool's capacity, and results are never dropped (flush_outq also copes with EAGAIN).
    dealer_.set(zmq::sockopt::sndhwm, 0);
    dealer_.set(zmq::sockopt::rcvhwm, 0);
    if (ipv6_) dealer_.set(zmq::sockopt::ipv6, 1);
    if (o_.pool_id.size() <= 255) dealer_.set(zmq::sockopt::routing_id, o_.pool_id);
    // On the interchange's host: its Unix socket, where the directory's mode (0700) is the
    // access control, so no CurveZMQ (docs/htex.md, "Security"). Elsewhere, TCP as given.
    if (!o_.ipc_url.empty()) {
      std::string why;
      if (can_use_same_host_socket(o_.ipc_url, o_.host_id, &why)) {
        endpoint_ = o_.ipc_url;
        same_host_ = true;
      } else {
        log_info("not using the same-host socket {}: {}; connecting to {}", o_.ipc_url, why, endpoint_);
      }
    }
    if (!o_.curve_server_key_file.empty() && !same_host_) {
      if (!zmq_has("curve")) {
        log_error("--curve-server-key was given but this libzmq has no CURVE support");
        return kExitError;
      }
      const std::string server = read_key_line(o_.curve_server_key_file, 1, &error);
      if (server.empty()) {
        log_error("{}", error);
        return kExitError;
      }
      std::string pub, sec;
      if (!o_.curve_client_keys_file.empty()) {
        pub = read_key_line(o_.curve_client_keys_file, 1, &error);
        if (!pub.empty()) sec = read_key_line(o_.curve_client_keys_file, 2, &error);
        if (pub.empty() || sec.empty()) {
          log_error("{}", error);
          return kExitError;
        }
      } else {
        char p[41], s[41];
        if (zmq_curve_keypair(p, s) != 0) {
          log_error("zmq_curve_keypair: {}", zmq_strerror(zmq_errno()));
          return kExitError;
        }
        pub = p;
        sec = s;
      }
      void* h = dealer_.handle();
      if (zmq_setsockopt(h, ZMQ_CURVE_SERVERKEY, server.c_str(), 41) != 0 ||
          zmq_setsockopt(h, ZMQ_CURVE_PUBLICKEY, pub.c_str(), 41) != 0 ||
          zmq_setsockopt(h, ZMQ_CURVE_SECRETKEY, sec.c_str(), 41) != 0) {
        log_error("cannot set the CURVE keys: {}", zmq_strerror(zmq_errno()));
        return kExitError;
      }
    }
    // Told by ZeroMQ when the TCP connection closes: the interchange's process died or closed
    // its socket; the pool then exits after kDisconnectGrace instead of heartbeat_threshold.
    if (zmq_socket_monitor(dealer_.handle(), kMonitorEndpoint, ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED) == 0) {
      monitor_ = zmq::socket_t(ctx_, zmq::socket_type::pair);
      monitor_.set(zmq::sockopt::linger, 0);
      monitor_.connect(kMonitorEndpoint);
    } else {
      log_warn("no ZeroMQ socket monitor ({}): a closed connection is noticed after the heartbeat threshold only",
               zmq_strerror(zmq_errno()));
    }
    try {
      dealer_.connect(endpoint_);
    } catch (const zmq::error_t& e) {
      log_error("cannot connect to '{}': {}", endpoint_, e.what());
      return kExitUsage;
    }
    period_ = o_.heartbeat_period;
    threshold_ = o_.heartbeat_threshold;
    log_info("pool {} (block {}) on {}: {} {}, prefetch {}, interchange {}{}{}", o_.pool_id, o_.block_id, hostname_,
             worker_count_, o_.no_python ? "shell threads (no Python workers)" : "workers", o_.prefetch, endpoint_,
             same_host_ ? " (same host, Unix socket)" : o_.curve_server_key_file.empty() ? "" : ", CurveZMQ",
             o_.no_python ? "" : fmt::format(", python '{}' {}", o_.python, python_version_));
    return -1;
  }

  // The worker count and each worker's CPUs (resources.hpp). Returns an exit status, or -1.
  int plan_workers_on_this_node() {
    std::string error;
    const std::optional<NodeResources> node = read_node_resources(&error);
    if (!node) {
      log_error("{}", error);
      return kExitUsage;
    }
    WorkerRequest request;
    request.workers = o_.workers;
    request.max_workers = o_.max_workers;
    request.cores_per_worker = o_.cores_per_worker;
    request.mem_per_worker = o_.mem_per_worker;
    request.accelerators = o_.accelerators.size();
    WorkerPlan plan = plan_workers(request, o_.affinity, *node);
    for (const std::string& w : plan.warnings) log_warn("{}", w);
    if (!plan.error.empty()) {
      log_error("{}", plan.error);
      return kExitUsage;
    }
    worker_count_ = plan.count;
    worker_cpus_ = std::move(plan.cpus);
    // What tasks that ask for cores, memory or gpus share (PoolCore admits them against it).
    node_capacity_.cpus = node->cpus;
    const double memory_gb = node->mem_available_gb.value_or(
        static_cast<double>(::sysconf(_SC_PHYS_PAGES)) * static_cast<double>(::sysconf(_SC_PAGESIZE)) / (1 << 30));
    node_capacity_.memory_mb = static_cast<std::uint64_t>(memory_gb * 1024);
    node_capacity_.accelerators = o_.accelerators;
    log_info("{}{}", plan.reason,
             o_.affinity.mode == AffinityMode::kNone ? "" : fmt::format("; --cpu-affinity {}", o_.cpu_affinity));
    return discover_mpi_nodes(static_cast<int>(node->cpus.size()));
  }

  // MPI mode: the block's nodes, once (docs/mpi.md). A block whose nodes cannot be found cannot
  // run MPI tasks: the pool exits with the reason in its log (the block fails).
  int discover_mpi_nodes(int own_cores) {
    if (o_.mpi_launcher.empty()) return -1;
    std::string how, error;
    mpi_block_ = discover_mpi_block(o_.mpi_launcher, o_.mpi_hosts, own_cores, &how, &error);
    if (!mpi_block_) {
      log_error("{}", error);
      return kExitUsage;
    }
    std::string nodes;
    for (const MpiNode& n : mpi_block_->nodes) nodes += fmt::format("{}{}:{}", nodes.empty() ? "" : ",", n.name, n.cores);
    log_info("MPI mode ({}): {} nodes from {}: {} (cores {})", o_.mpi_launcher, mpi_block_->nodes.size(), how, nodes,
             mpi_block_->cores_known ? "as the scheduler says" : "guessed from this node's CPUs");
    return -1;
  }

  // Returns an exit status, or -1 once REGISTERED arrived.
  int register_with_interchange() {
    proto::Register r;
    r.pervade_version = PERVADE_VERSION;
    r.python_version = python_version_;
    r.pool_id = o_.pool_id;
    r.block_id = o_.block_id;
    r.hostname = hostname_;
    r.worker_count = total_workers();
    r.prefetch = o_.prefetch;
    r.cpu_count = static_cast<int>(::sysconf(_SC_NPROCESSORS_ONLN));
    r.total_memory = static_cast<std::uint64_t>(::sysconf(_SC_PHYS_PAGES)) * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
    if (!o_.no_python)  // tasks that ask for resources are Python tasks
      r.capacity = proto::Resources{static_cast<int>(node_capacity_.cpus.size()), node_capacity_.memory_mb,
                                    static_cast<int>(node_capacity_.accelerators.size())};
    if (o_.walltime > 0) r.walltime = std::max(1e-3, o_.walltime - o_.walltime_grace);
    // The interchange drains the pool then: when tasks must stop (walltime), or at drain_period.
    if (const auto ends = std::min(stop_tasks_at_, drain_at_); ends != Clock::time_point::max()) {
      // At least a little: an ends_in of 0 would mean "no end".
      r.ends_in = std::max(1e-3, std::chrono::duration<double>(ends - Clock::now()).count());
    }
    send_to_interchange(proto::PoolMessage{std::move(r)});
    const auto deadline = Clock::now() + seconds(threshold_);
    for (;;) {
      flush_outq();
      std::vector<zmq::pollitem_t> items{
          {dealer_.handle(), 0, static_cast<short>(ZMQ_POLLIN | (outq_.empty() ? 0 : ZMQ_POLLOUT)), 0},
          {nullptr, signal_fd_, ZMQ_POLLIN, 0}};
      if (!poll(items, ms_until(deadline))) continue;
      if (items[1].revents) {
        handle_signals();
        if (exit_status_) return *exit_status_;
      }
      for (int i = 0; i < 1000; ++i) {
        std::optional<proto::InterchangeMessage> m;
        if (!next_from_interchange(&m)) break;
        if (!m) continue;
        if (auto* reg = std::get_if<proto::Registered>(&*m)) {
          apply_registered(*reg);
          log_info("registered with the interchange (heartbeat period {} s, threshold {} s)", period_, threshold_);
          return -1;
        }
        if (auto* refused = std::get_if<proto::Refused>(&*m)) {
          log_error("the interchange refused this pool: {}", refused->reason);
          return kExitRefused;
        }
        static const char* const kNames[] = {"REGISTERED", "REFUSED", "TASKS", "HEARTBEAT", "DRAIN", "SHUTDOWN", "CANCEL"};
        static_assert(std::variant_size_v<proto::InterchangeMessage> == std::size(kNames));
        log_warn("ignoring {} received before REGISTERED", kNames[m->index()]);
      }
      if (Clock::now() >= deadline) {
        log_error("no answer from the interchange at {} within {} s of sending REGISTER; exiting", endpoint_,
                  threshold_);
        return kExitNoAnswer;
      }
    }
  }

  void apply_registered(const proto::Registered& reg) {
    if (reg.heartbeat_period > 0 && std::isfinite(reg.heartbeat_period))
      period_ = reg.heartbeat_period;
    else
      log_warn("ignoring invalid heartbeat period {}", reg.heartbeat_period);
    if (reg.heartbeat_threshold > 0 && std::isfinite(reg.heartbeat_threshold))
      threshold_ = reg.heartbeat_threshold;
    else
      log_warn("ignoring invalid heartbeat threshold {}", reg.heartbeat_threshold);
    if (reg.resource_interval >= 0 && std::isfinite(reg.resource_interval)) {
      sample_interval_ = reg.resource_interval;
      if (sample_interval_ > 0) next_sample_ = Clock::now() + seconds(sample_interval_);
      log_info("resource monitoring on: tasks on Python workers sampled every {} s and at their start and end",
               sample_interval_);
    }
  }

  // zmq::poll that treats EINTR as "nothing happened". Returns false then.
  static bool poll(std::vector<zmq::pollitem_t>& items, long timeout_ms) {
    try {
      zmq::poll(items, std::chrono::milliseconds(timeout_ms));
      return true;
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) return false;
      throw;
    }
  }

  // ---------------------------------------------------------------- main loop
  int main_loop() {
    last_recv_ = last_send_ = Clock::now();
    std::vector<zmq::pollitem_t> items;
    std::vector<std::size_t> item_worker;
    while (!exit_status_) {
      dispatch();
      flush_usage();  // before the results: a task's last sample must reach the driver first
      flush_results();
      flush_outq();
      if (core_.draining() && core_.drained() && outq_.empty()) {
        send_to_interchange(proto::PoolMessage{proto::Drained{}});
        flush_outq();
        linger_ms_ = static_cast<int>(kDrainLinger.count());
        log_info("drained: all tasks finished; exiting");
        return kExitOk;
      }

      const auto now = Clock::now();
      auto next = std::min(last_send_ + seconds(period_), last_recv_ + seconds(threshold_));
      if (disconnected_at_) next = std::min(next, *disconnected_at_ + disconnect_grace());
      next = std::min(next, next_sample_);
      next = std::min(next, terminated_ ? block_end_ : stop_tasks_at_);
      for (const Worker& w : workers_)
        if (w.kill_at && !w.dying) next = std::min(next, *w.kill_at);
      for (const auto& g : stopping_commands_) next = std::min(next, g.second);
      items.clear();
      item_worker.clear();
      items.push_back(
          {dealer_.handle(), 0, static_cast<short>(ZMQ_POLLIN | (outq_.empty() ? 0 : ZMQ_POLLOUT)), 0});
      items.push_back({nullptr, signal_fd_, ZMQ_POLLIN, 0});
      items.push_back({nullptr, wake_fd_.get(), ZMQ_POLLIN, 0});
      items.push_back({monitor_ ? monitor_.handle() : nullptr, -1, static_cast<short>(monitor_ ? ZMQ_POLLIN : 0), 0});
      for (std::size_t i = 0; i < workers_.size(); ++i) {
        const Worker& w = workers_[i];
        if (!w.fd.valid()) continue;
        items.push_back({nullptr, w.fd.get(), static_cast<short>(ZMQ_POLLIN | (w.out.empty() ? 0 : ZMQ_POLLOUT)), 0});
        item_worker.push_back(i);
      }
      if (!poll(items, ms_until(next, now))) continue;

      // Workers first: a replacement started while handling signals may reuse a descriptor
      // number, and stale readiness must not be applied to it.
      for (std::size_t k = kFirstWorkerItem; k < items.size(); ++k) {
        Worker& w = workers_[item_worker[k - kFirstWorkerItem]];
        if (!w.fd.valid() || w.fd.get() != items[k].fd || items[k].revents == 0) continue;
        if (items[k].revents & ZMQ_POLLOUT) flush_worker(w);
        if (w.fd.valid() && (items[k].revents & (ZMQ_POLLIN | ZMQ_POLLERR))) {
          read_worker(w);
          if (core_.cancels_pending()) stop_if_cancelled(w);
        }
      }
      if (items[1].revents) handle_signals();
      if (items[2].revents) {
        std::uint64_t v;
        [[maybe_unused]] ssize_t n = ::read(wake_fd_.get(), &v, sizeof v);
        if (remote_) reap_workers();  // a remote worker's process may have ended
      }
      if (items[3].revents) read_monitor();
      std::vector<proto::TaskResult> done;
      shell_->take(&done);
      for (auto& r : done) {
        // A command that exited non-zero fails in the driver (BashExitFailure): its followers
        // must not start.
        const auto code = proto::decode_exit_code(r.payload.data(), r.payload.size());
        const bool succeeded = r.status == proto::kStatusOk && code == 0;
        core_.shell_result(std::move(r), succeeded);
      }
      read_from_interchange();
      if (exit_status_) break;

      const auto after = Clock::now();
      if (disconnected_at_ && after - *disconnected_at_ >= disconnect_grace()) {
        log_warn("interchange gone: its connection closed {} s ago and did not come back; exiting",
                 std::chrono::duration<double>(disconnect_grace()).count());
        return kExitOk;
      }
      for (Worker& w : workers_)
        if (w.kill_at && !w.dying && w.pid > 0 && *w.kill_at <= after)
          kill_worker(w, "it closed its connection to the pool but did not exit");
      kill_stopped_commands(after);
      if (after - last_recv_ >= seconds(threshold_)) {
        log_warn("interchange gone: no message from it for {} s; exiting", threshold_);
        return kExitOk;
      }
      if (!terminated_ && after >= stop_tasks_at_) terminate_tasks();
      if (after >= block_end_) {
        log_warn("the block's walltime of {} s is over; exiting", o_.walltime);
        return kExitOk;
      }
      if (after - last_send_ >= seconds(period_) && outq_.empty())
        send_to_interchange(proto::PoolMessage{proto::Heartbeat{}});
      if (after >= next_sample_) {
        for (Worker& w : workers_) sample(w, /*first=*/false, /*last=*/false);
        next_sample_ = after + seconds(sample_interval_);
      }
    }
    return *exit_status_;
  }

  static constexpr std::size_t kFirstWorkerItem = 4;  // poll items: dealer, signals, wake, monitor

  Clock::duration disconnect_grace() const {
    return std::min<Clock::duration>(kDisconnectGrace, std::chrono::duration_cast<Clock::duration>(seconds(threshold_)));
  }

  // Socket monitor events: two frames, (uint16 event, uint32 value) then the endpoint.
  void read_monitor() {
    for (;;) {
      zmq::message_t event, endpoint;
      if (!monitor_.recv(event, zmq::recv_flags::dontwait)) return;
      if (event.more()) (void)monitor_.recv(endpoint, zmq::recv_flags::none);
      if (event.size() < 2) continue;
      std::uint16_t id;
      std::memcpy(&id, event.data(), sizeof id);
      if (id == ZMQ_EVENT_DISCONNECTED && !disconnected_at_) {
        disconnected_at_ = Clock::now();
        log_warn("the connection to the interchange closed; exiting in {} s unless it comes back",
                 std::chrono::duration<double>(disconnect_grace()).count());
      } else if (id == ZMQ_EVENT_CONNECTED && disconnected_at_) {
        disconnected_at_.reset();
        log_info("connected to the interchange again");
        // The interchange saw the connection close too: a message now tells it this pool is
        // back before its grace period ends (docs/protocol.md, "Liveness").
        if (outq_.empty()) send_to_interchange(proto::PoolMessage{proto::Heartbeat{}});
      }
    }
  }

  // ---------------------------------------------------------------- interchange link
  void send_to_interchange(const proto::PoolMessage& m) {
    outq_.push_back(Outgoing{proto::encode(m), proto::out_of_band_frames(m)});
    flush_outq();
  }

  void flush_outq() {
    while (!outq_.empty()) {
      const Outgoing& o = outq_.front();
      zmq::message_t msg(o.body.data(), o.body.size());
      zmq::send_result_t r;
      try {
        r = dealer_.send(msg, o.frames.empty() ? zmq::send_flags::dontwait
                                               : zmq::send_flags::sndmore | zmq::send_flags::dontwait);
      } catch (const zmq::error_t& e) {
        if (e.num() == EINTR) continue;
        throw;
      }
      if (!r) return;  // high-water mark: wait for POLLOUT
      // ZeroMQ took the first frame, so it takes the rest of the message (the high-water mark
      // counts whole messages). The buffers are sent from the messages they were read into.
      for (std::size_t i = 0; i < o.frames.size(); ++i) {
        auto* shared = new proto::SharedBuffer(o.frames[i]);
        zmq::message_t frame(
            const_cast<char*>(shared->data), shared->size,
            [](void*, void* owner) { delete static_cast<proto::SharedBuffer*>(owner); }, shared);
        const auto flags = i + 1 < o.frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none;
        while (true) {
          try {
            (void)dealer_.send(frame, flags);
            break;
          } catch (const zmq::error_t& e) {
            if (e.num() != EINTR) throw;
          }
        }
      }
      outq_.pop_front();
      last_send_ = Clock::now();
    }
  }

  void flush_usage() {
    if (usage_.empty()) return;
    proto::Usage batch;
    batch.samples = std::move(usage_);
    usage_.clear();
    send_to_interchange(proto::PoolMessage{std::move(batch)});
  }

  // One sample of the task a worker runs: at its start and end the worker
  // process alone, from its open stat file (cheap: this is per task); periodic samples add its
  // descendants and read context switches and I/O too. Counters are since the task started.
  void sample(Worker& w, bool first, bool last) {
    if (sample_interval_ < 0 || w.pid <= 0 || w.remote) return;  // remote workers are not sampled
    const std::optional<std::uint64_t> task = core_.running(w.rank);
    if (!task) return;
    if (!w.stat_fd.valid()) {
      const int fd = ::open(fmt::format("/proc/{}/stat", w.pid).c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) return;
      w.stat_fd = Fd(fd);
    }
    detail::ProcUsage now;
    const bool periodic = !first && !last;
    if (first && w.end_reading) {
      now = *w.end_reading;
    } else if (!(periodic ? detail::read_tree_usage(w.pid, &now) : detail::read_stat_fd(w.stat_fd.get(), &now))) {
      return;
    }
    if (last) w.end_reading = now;
    if (first) {
      w.usage_start = now;
      w.first_sample.reset();
    }
    const detail::ProcUsage used = now.since(w.usage_start);
    proto::UsageSample s;
    s.task_id = *task;
    s.time_us = std::chrono::duration_cast<std::chrono::microseconds>(
                    std::chrono::system_clock::now().time_since_epoch()).count();
    s.pid = static_cast<int>(w.pid);
    s.children = std::max(0, now.processes - 1);
    s.cpu_user = used.cpu_user;
    s.cpu_system = used.cpu_system;
    s.rss = used.rss;
    s.vms = used.vms;
    if (periodic) {  // counters the cheap samples do not read
      s.read_bytes = used.read_bytes;
      s.write_bytes = used.write_bytes;
      s.ctx_voluntary = used.ctx_voluntary;
      s.ctx_involuntary = used.ctx_involuntary;
    }
    s.first = first;
    s.last = last;
    if (first) {  // held until the task's next sample (see Worker::first_sample)
      w.first_sample = s;
      return;
    }
    release_first_sample(w, s.time_us, /*task_ended=*/last);
    usage_.push_back(s);
  }

  // The running task's held first sample goes out before its next sample, or when the task dies
  // with its worker; it is dropped when the task ended within kFirstSampleAfter of its start.
  void release_first_sample(Worker& w, std::int64_t now_us, bool task_ended) {
    if (!w.first_sample) return;
    if (reports_first_sample(std::chrono::microseconds(now_us - w.first_sample->time_us), task_ended))
      usage_.push_back(*w.first_sample);
    w.first_sample.reset();
  }

  // Every result leaves through here (PoolCore::results()).
  void flush_results() {
    std::vector<proto::TaskResult>& results = core_.results();
    if (results.empty()) return;
    for (const proto::TaskResult& r : results) {
      if (r.status == proto::kStatusWorkerLost)
        log_warn("task {}: {}", r.task_id, r.payload);
      else
        log_debug("task {} finished with status {}", r.task_id, r.status);
    }
    proto::Results batch;
    batch.results = std::move(results);
    results.clear();
    send_to_interchange(proto::PoolMessage{std::move(batch)});
  }

  // One message (all its frames); false when nothing is waiting.
  // Takes the next message waiting from the interchange: false when none is waiting; *out
  // stays empty when it was not a well-formed message (logged and dropped).
  bool next_from_interchange(std::optional<proto::InterchangeMessage>* out) {
    auto first = std::make_shared<zmq::message_t>();
    zmq::recv_result_t r;
    try {
      r = dealer_.recv(*first, zmq::recv_flags::dontwait);
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) return false;
      throw;
    }
    if (!r) return false;
    // The frames after the first are out-of-band buffers of its tasks: they stay in ZeroMQ's
    // messages, which the tasks share until the bytes are written to a worker.
    std::vector<proto::SharedBuffer> frames{{first, static_cast<const char*>(first->data()), first->size()}};
    for (bool more = first->more(); more;) {
      auto next = std::make_shared<zmq::message_t>();
      if (!dealer_.recv(*next, zmq::recv_flags::none)) break;  // the rest of a message is always there
      more = next->more();
      frames.push_back({next, static_cast<const char*>(next->data()), next->size()});
    }
    std::string error;
    *out = proto::decode_interchange_message(frames, &error);
    if (!*out)
      log_warn("ignoring a malformed message from the interchange ({} bytes, {} frames): {}", first->size(),
               frames.size(), error);
    return true;
  }

  void read_from_interchange() {
    for (int i = 0; i < 1000 && !exit_status_; ++i) {
      std::optional<proto::InterchangeMessage> m;
      if (!next_from_interchange(&m)) return;
      if (!m) continue;
      last_recv_ = Clock::now();
      std::visit(Overloaded{
                     [&](proto::Registered& reg) { apply_registered(reg); },
                     [&](proto::Refused& refused) {
                       log_error("the interchange refused this pool: {}", refused.reason);
                       exit_status_ = kExitRefused;
                     },
                     [&](proto::Tasks& tasks) {
                       log_debug("received {} tasks", tasks.tasks.size());
                       core_.accept(tasks);
                     },
                     [&](proto::Heartbeat&) {},
                     [&](proto::Drain&) {
                       if (!core_.draining()) log_info("DRAIN: finishing the tasks held, accepting no more");
                       core_.drain();
                     },
                     [&](proto::Shutdown&) {
                       log_info("SHUTDOWN: stopping the workers and exiting");
                       exit_status_ = kExitOk;
                     },
                     [&](proto::Cancel& c) {
                       for (std::uint64_t id : c.task_ids) cancel(id);
                     },
                 },
                 *m);
    }
  }

  // CANCEL: a task still waiting here is answered at once (PoolCore); a running one has its
  // worker killed (with whatever the task started) and replaced; one waiting in a worker's
  // socket is stopped the moment it starts (stop_if_cancelled after each read).
  void cancel(std::uint64_t id) {
    int rank = -1;
    switch (core_.cancel(id, &rank)) {
      case CancelOutcome::answered:
        return;
      case CancelOutcome::on_worker: {
        // The worker may have finished tasks whose results are still in its socket: the task it
        // runs now is known only once they are read.
        Worker& w = workers_[static_cast<std::size_t>(rank)];
        if (w.fd.valid()) read_worker(w);
        stop_if_cancelled(w);
        return;
      }
      case CancelOutcome::on_shell:
        if (shell_->cancel(id)) return;
        break;  // it finished: its result is on the way
      case CancelOutcome::not_here:
        break;
    }
    log_info("CANCEL of task {}: not here (finished already)", id);
  }

  // Kills the worker (and what its task started) if the task it runs was cancelled; call with its
  // socket read up to now. A cancelled task that finished first simply returns its result.
  void stop_if_cancelled(Worker& w) {
    if (std::optional<std::string> why = core_.stop_if_cancelled(w.rank)) kill_worker(w, std::move(*why));
  }

  // ---------------------------------------------------------------- workers
  // What a worker's environment sets over the pool's (a remote worker's: over its rank's).
  std::vector<std::pair<std::string, std::string>> worker_variables(int rank) const {
    std::vector<std::pair<std::string, std::string>> ours{
        {"PERVADE_WORKER_RANK", std::to_string(rank)},
        {"PERVADE_WORKER_COUNT", std::to_string(total_workers())},
        {"PERVADE_POOL_ID", o_.pool_id},
        {"PERVADE_BLOCK_ID", o_.block_id},
        {"PARSL_WORKER_RANK", std::to_string(rank)},
        {"PARSL_WORKER_COUNT", std::to_string(total_workers())},
        {"PARSL_WORKER_POOL_ID", o_.pool_id},
        {"PARSL_WORKER_BLOCK_ID", o_.block_id},
    };
    if (!o_.accelerators.empty() && rank < worker_count_) {  // this node's accelerators: not a remote worker's
      const std::string& a = o_.accelerators[static_cast<std::size_t>(rank) % o_.accelerators.size()];
      ours.emplace_back("CUDA_VISIBLE_DEVICES", a);
      ours.emplace_back("ROCR_VISIBLE_DEVICES", a);
      ours.emplace_back("ZE_AFFINITY_MASK", a);
      ours.emplace_back("ZE_ENABLE_PCI_ID_DEVICE_ORDER", "1");
    }
    // A pinned worker tells OpenMP runtimes about its CPUs, overriding the environment, as
    // Parsl's workers do (threads = CPUs of the worker; GNU and Intel affinity lists).
    if (static_cast<std::size_t>(rank) < worker_cpus_.size()) {
      const std::vector<int>& cpus = worker_cpus_[static_cast<std::size_t>(rank)];
      std::string list;
      for (int c : cpus) list += (list.empty() ? "" : ",") + std::to_string(c);
      ours.emplace_back("OMP_NUM_THREADS", std::to_string(cpus.size()));
      ours.emplace_back("GOMP_CPU_AFFINITY", list);
      ours.emplace_back("KMP_AFFINITY", "explicit,proclist=[" + list + "]");
    }
    return ours;
  }

  std::vector<std::string> worker_environment(int rank) const {
    const std::vector<std::pair<std::string, std::string>> ours = worker_variables(rank);
    std::vector<std::string> env;
    for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
      const std::string_view entry(*e);
      const std::string_view name = entry.substr(0, entry.find('='));
      bool overridden = false;
      for (const auto& [k, v] : ours)
        if (name == k) overridden = true;
      if (!overridden) env.emplace_back(entry);
    }
    for (const auto& [k, v] : ours) env.push_back(k + "=" + v);
    return env;
  }

  // Starts (or restarts) the worker in slot `w`. Failures to start count as start failures.
  void start_worker(Worker& w) {
    while (!exit_status_) {
      std::string error;
      if (spawn_worker(w, &error)) return;
      log_error("cannot start worker {}: {}", w.rank, error);
      if (++consecutive_start_failures_ >= kMaxStartFailures) {
        fail_broken_environment(error);
        return;
      }
    }
  }

  // A bash app's command runs in a process group of its own (run_shell starts it in a new
  // session), which killing its worker's group does not reach; left running, a cancelled MPI
  // task's launcher and ranks would go on using nodes that the next task is given. Those of the
  // worker's children that lead a group get SIGTERM now and SIGKILL after kCommandStopGrace
  // (kill_stopped_commands; a group id is not reused within seconds).
  void stop_commands_of(pid_t worker) {
    for (pid_t child : children_of(worker)) {
      if (::getpgid(child) != child) continue;
      ::kill(-child, SIGTERM);
      stopping_commands_.emplace_back(child, Clock::now() + kCommandStopGrace);
    }
  }

  void kill_stopped_commands(Clock::time_point now) {
    std::erase_if(stopping_commands_, [&](const std::pair<pid_t, Clock::time_point>& g) {
      if (g.second > now) return false;
      ::kill(-g.first, SIGKILL);
      return true;
    });
  }

  // MPI mode without its launcher on PATH could run no MPI task: the interchange is told (FAILED)
  // so that the executor fails with the reason instead of its tasks failing one by one.
  int check_mpi_launcher() {
    if (o_.mpi_launcher.empty() || on_path(o_.mpi_launcher)) return -1;
    const std::string reason = fmt::format(
        "MPI mode: the launcher '{}' (mpi_launcher) is not on the PATH of pool {} on host {}: install it, or make "
        "it reachable in the provider's worker_init (e.g. module load)",
        o_.mpi_launcher, o_.pool_id, hostname_);
    log_error("{}; exiting", reason);
    send_to_interchange(proto::PoolMessage{proto::Failed{reason}});
    linger_ms_ = static_cast<int>(kDrainLinger.count());
    return kExitBrokenWorkers;
  }

  static bool on_path(const std::string& program) {
    const char* path = std::getenv("PATH");
    std::string dirs = path ? path : "/usr/bin:/bin";
    std::size_t start = 0;
    while (start <= dirs.size()) {
      const auto colon = dirs.find(':', start);
      std::string dir = dirs.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
      if (dir.empty()) dir = ".";
      if (::access((dir + "/" + program).c_str(), X_OK) == 0) return true;
      if (colon == std::string::npos) break;
      start = colon + 1;
    }
    return false;
  }

  // The interchange is told (FAILED), so that it fails this pool's tasks at once with the reason
  // and the executor counts the block as failed instead of replacing it forever.
  void fail_broken_environment(const std::string& last) {
    const std::string reason =
        fmt::format("its workers cannot start with the Python interpreter '{}': {} in a row failed before becoming "
                    "ready (last: {}); {}",
                    o_.python, consecutive_start_failures_, last, diagnose_worker_interpreter(o_.python));
    log_error("{}; exiting", reason);
    send_to_interchange(proto::PoolMessage{proto::Failed{reason}});
    linger_ms_ = static_cast<int>(kDrainLinger.count());
    exit_status_ = kExitBrokenWorkers;
  }

  std::vector<std::string> worker_args(int rank) const {
    std::vector<std::string> args{o_.python, "-m",        "pervade.worker", "--fd",        "3",
                                  "--rank",  std::to_string(rank), "--pool-id", o_.pool_id, "--block-id",
                                  o_.block_id, "--log-level", std::to_string(o_.log_level)};
    if (!worker_log_dir_.empty())
      args.insert(args.end(), {"--log-file", worker_log_dir_ + "/worker_" + std::to_string(rank) + ".log"});
    return args;
  }

  // The pool's side of a worker is the same for a remote one: a socket; its process starts on its rank.
  bool spawn_remote_worker(Worker& w, std::string* error) {
    std::vector<std::string> vars;
    for (auto& [k, v] : worker_variables(w.rank)) vars.push_back(k + "=" + v);
    Fd fd = remote_->start(w.remote_slot, worker_args(w.rank), std::move(vars), error);
    if (!fd.valid()) return false;
    reset_worker(w, kRemotePid, std::move(fd));
    log_info("starting worker {} on {}", w.rank, remote_->where(w.remote_slot));
    return true;
  }

  // A new process `pid` in the slot, with its socket `fd`.
  void reset_worker(Worker& w, pid_t pid, Fd fd) {
    w.pid = pid;
    w.stat_fd = Fd();  // the previous process's
    w.end_reading.reset();
    w.first_sample.reset();
    w.fd = std::move(fd);
    w.reader = proto::FrameReader(kMaxWorkerFrame);
    w.incoming.reset();
    w.dying = false;
    w.kill_reason.clear();
    w.kill_at.reset();
    w.out.clear();
    core_.worker_started(w.rank);
  }

  // "worker 2 (pid 7)", or "worker 5 (rank 2 on node3)".
  std::string describe(const Worker& w, pid_t pid) const {
    return w.remote ? fmt::format("worker {} ({})", w.rank, remote_->where(w.remote_slot))
                    : fmt::format("worker {} (pid {})", w.rank, pid);
  }

  bool process_exited(const Worker& w) const {
    return w.remote ? remote_->exited(w.remote_slot).has_value() : has_exited(w.pid);
  }

  // `sig` to the worker's process group; with stop_commands, its bash commands get SIGTERM and
  // SIGKILL later (stop_commands_of).
  void signal_worker(const Worker& w, int sig, bool stop_commands) {
    if (w.remote) {
      remote_->signal(w.remote_slot, sig, stop_commands);
      return;
    }
    if (stop_commands) stop_commands_of(w.pid);
    ::kill(-w.pid, sig);
    if (sig == SIGKILL) ::kill(w.pid, SIGKILL);  // also if it left its group
  }

  // After process_exited(): reaps the process (killing what is left of its group) and says how it ended.
  std::string reap(Worker& w) {
    if (w.remote) {
      return remote_->exited(w.remote_slot).value_or("ended");
    }
    const int status = kill_and_reap(w.pid);
    return status == -1 ? "vanished (its exit status was lost)" : describe_wait_status(status);
  }

  int total_workers() const {
    int n = worker_count_;
    if (remote_)
      for (const RemoteNode& r : remote_->nodes()) n += r.workers;
    return n;
  }

  bool spawn_worker(Worker& w, std::string* error) {
    if (w.remote) return spawn_remote_worker(w, error);
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
      *error = fmt::format("socketpair: {}", os_error(errno));
      return false;
    }
    Fd ours(sv[0]);
    Fd theirs(sv[1]);
    // Room for a big task (or result) in one write, instead of the default ~200 KB that makes
    // a megabyte argument cross in several rounds of wake-ups (capped by net.core.wmem_max).
    for (int fd : {ours.get(), theirs.get()}) {
      const int size = kWorkerSocketBuffer;
      ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    }
    // dup2(theirs, 3) in the child must change the number, or fd 3 would keep FD_CLOEXEC.
    if (!move_fd_at_least(theirs, 4)) {
      *error = fmt::format("fcntl: {}", os_error(errno));
      return false;
    }
    const int flags = ::fcntl(ours.get(), F_GETFL);
    ::fcntl(ours.get(), F_SETFL, flags | O_NONBLOCK);

    SpawnFileActions fa;
    if (int rc = posix_spawn_file_actions_adddup2(&fa.fa, theirs.get(), 3)) {
      *error = fmt::format("posix_spawn_file_actions_adddup2: {}", os_error(rc));
      return false;
    }
    SpawnAttr attr;
    if (int rc = detail::reset_child_signals(attr, POSIX_SPAWN_SETPGROUP)) {
      *error = fmt::format("posix_spawnattr: {}", os_error(rc));
      return false;
    }
    std::vector<std::string> args = worker_args(w.rank);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<std::string> env = worker_environment(w.rank);
    std::vector<char*> envp;
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);

    // CPU pinning: a child inherits the affinity of the thread that starts it, so this thread
    // takes the worker's CPUs for the duration of the spawn (the worker is pinned from its
    // first instruction on) and then gets its own back.
    std::string cpu_list;
    const std::optional<cpu_set_t> cpus = worker_cpus(w.rank, &cpu_list);
    cpu_set_t saved;
    CPU_ZERO(&saved);
    bool pinned = false;
    if (cpus && ::sched_getaffinity(0, sizeof saved, &saved) == 0) {
      pinned = ::sched_setaffinity(0, sizeof *cpus, &*cpus) == 0;
      if (!pinned) log_warn("cannot pin worker {} to CPUs {}: {}", w.rank, cpu_list, os_error(errno));
    }
    pid_t pid = 0;
    const int rc = posix_spawnp(&pid, o_.python.c_str(), &fa.fa, &attr.attr, argv.data(), envp.data());
    if (pinned) ::sched_setaffinity(0, sizeof saved, &saved);
    if (!pinned) cpu_list.clear();
    if (rc != 0) {
      *error = fmt::format("cannot run '{}': {}", o_.python, os_error(rc));
      return false;
    }
    theirs.reset();
    reset_worker(w, pid, std::move(ours));
    log_info("started worker {} (pid {}){}", w.rank, w.pid, cpu_list.empty() ? "" : " on CPUs " + cpu_list);
    return true;
  }

  // The CPUs of worker `rank` under --cpu-affinity (planned in plan_workers_on_this_node).
  std::optional<cpu_set_t> worker_cpus(int rank, std::string* list) const {
    if (rank < 0 || static_cast<std::size_t>(rank) >= worker_cpus_.size()) return std::nullopt;
    const std::vector<int>& cpus = worker_cpus_[static_cast<std::size_t>(rank)];
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int c : cpus) CPU_SET(c, &set);
    *list = format_cpu_list(cpus);
    return set;
  }

  // walltime_grace before the block's end: running tasks get SIGTERM (their worker's process
  // group: the worker and what the task started), so they can save their state (parsl#3674). The
  // interchange drains the pool at the same time (REGISTER's ends_in); no task with a
  // running_time starts any more (PoolCore).
  void terminate_tasks() {
    terminated_ = true;
    log_warn("the block ends in {} s (walltime {} s): sending SIGTERM to running tasks", o_.walltime_grace,
             o_.walltime);
    for (Worker& w : workers_) {
      if (w.pid <= 0 || w.dying || !core_.running(w.rank)) continue;
      w.kill_reason = fmt::format("SIGTERM: its block's walltime ends in {} s", o_.walltime_grace);
      signal_worker(w, SIGTERM, false);
    }
  }

  // Kills the worker's process group; it is reaped (and its task answered) on SIGCHLD. Its bash
  // command is stopped too (stop_commands_of).
  void kill_worker(Worker& w, std::string reason) {
    if (w.dying || w.pid <= 0) return;
    w.dying = true;
    core_.worker_unavailable(w.rank);
    w.kill_reason = std::move(reason);
    if (!stopping_) log_warn("{}: {}; killing it", describe(w, w.pid), w.kill_reason);
    signal_worker(w, SIGKILL, true);
    w.fd.reset();
    w.out.clear();
  }

  // The frame goes out with one sendmsg of (length, body, then a task's out-of-band buffers)
  // when nothing is waiting before it; only what the socket does not take is queued (frame
  // bytes copied, buffers shared). With defer_small, a frame of at most kPipelineMaxBytes
  // without buffers only joins w.out (the caller flushes).
  void send_to_worker(Worker& w, const proto::ToWorker& m, bool defer_small = false) {
    const proto::Bytes body = proto::encode(m);
    char header[4];
    const auto n = static_cast<std::uint32_t>(body.size());
    for (int i = 0; i < 4; ++i) header[i] = static_cast<char>((n >> (8 * i)) & 0xff);
    const auto* task = std::get_if<proto::WorkerTask>(&m);
    if (defer_small && body.size() <= kPipelineMaxBytes && (!task || task->buffers.empty())) {
      w.out.push_copy(header, sizeof header);
      w.out.push_copy(body.data(), body.size());
      return;
    }
    std::vector<iovec> iov{{header, sizeof header}, {const_cast<char*>(body.data()), body.size()}};
    if (task)
      for (const auto& b : task->buffers) iov.push_back({const_cast<char*>(b.data), b.size});
    std::size_t sent = 0;
    if (w.out.empty() && w.fd.valid()) {
      const ssize_t r = write_iov(w, iov.data(), std::min<std::size_t>(iov.size(), kMaxIov));
      if (r < 0) return;
      sent = static_cast<std::size_t>(r);
    }
    // Queue what is left, piece by piece.
    for (std::size_t i = 0; i < iov.size(); ++i) {
      const std::size_t len = iov[i].iov_len;
      const std::size_t skip = std::min(sent, len);
      sent -= skip;
      if (skip == len) continue;
      if (i < 2) {
        w.out.push_copy(static_cast<const char*>(iov[i].iov_base) + skip, len - skip);
      } else {
        proto::SharedBuffer b = task->buffers[i - 2];
        b.data += skip;
        b.size -= skip;
        w.out.push_shared(std::move(b));
      }
    }
    flush_worker(w);
  }

  static constexpr std::size_t kMaxIov = 64;

  // One non-blocking sendmsg; returns the bytes written (0 when the socket is full), or -1
  // when the socket failed (the worker is then killed).
  ssize_t write_iov(Worker& w, iovec* iov, std::size_t count) {
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = count;
    ssize_t r;
    do {
      r = ::sendmsg(w.fd.get(), &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (r < 0 && errno == EINTR);
    if (r >= 0) return r;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    kill_worker(w, fmt::format("writing to its socket failed: {}", os_error(errno)));
    return -1;
  }

  void flush_worker(Worker& w) {
    while (w.fd.valid() && !w.out.empty()) {
      iovec iov[kMaxIov];
      std::size_t count = 0;
      for (const auto& c : w.out.chunks) {
        if (count == kMaxIov) break;
        const std::size_t skip = count == 0 ? w.out.offset : 0;
        iov[count++] = {const_cast<char*>(c.data()) + skip, c.size() - skip};
      }
      ssize_t r = write_iov(w, iov, count);
      if (r <= 0) return;  // full (POLLOUT will call again), or the worker was killed
      auto left = static_cast<std::size_t>(r);
      while (left > 0 && !w.out.empty()) {
        const std::size_t rest = w.out.chunks.front().size() - w.out.offset;
        if (left < rest) {
          w.out.offset += left;
          left = 0;
        } else {
          left -= rest;
          w.out.chunks.pop_front();
          w.out.offset = 0;
        }
      }
    }
  }

  void read_worker(Worker& w) {
    char buf[65536];
    while (w.fd.valid()) {
      if (w.incoming) {
        if (!read_result_buffers(w)) return;
        parse_frames(w);
        continue;
      }
      const ssize_t n = ::recv(w.fd.get(), buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) {
        w.reader.feed(buf, static_cast<std::size_t>(n));
        parse_frames(w);
        continue;
      }
      if (!recv_again(w, n)) return;
    }
  }

  // The complete frames the reader holds, up to a RESULT whose buffers are still to be read.
  void parse_frames(Worker& w) {
    while (w.fd.valid() && !w.incoming) {
      proto::Bytes body;
      bool broken = false;
      if (!w.reader.next(&body, &broken)) {
        if (broken) kill_worker(w, "sent a frame longer than the limit (malformed length prefix)");
        return;
      }
      on_worker_frame(w, body);
    }
  }

  // After a recv() from the worker's socket that gave n <= 0: true to call it again (EINTR).
  bool recv_again(Worker& w, ssize_t n) {
    if (n == 0 || errno == ECONNRESET) {  // ECONNRESET: it closed with unread data
      // End of the connection: the worker is most likely exiting (reaped on SIGCHLD, with
      // its own exit status); if it lingers, it is killed after kEofGrace.
      w.fd.reset();
      w.out.clear();
      core_.worker_unavailable(w.rank);
      if (!w.dying) w.kill_at = Clock::now() + kEofGrace;
      return false;
    }
    if (errno == EINTR) return true;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return false;
    kill_worker(w, fmt::format("reading its socket failed: {}", os_error(errno)));
    return false;
  }

  // The raw bytes of w.incoming's buffers: what the frame reader holds first, then straight
  // from the socket into each buffer's ZeroMQ message (the only copy the pool makes). True
  // when the result is complete (and reported) or recv() is to be called again.
  bool read_result_buffers(Worker& w) {
    Worker::IncomingResult& in = *w.incoming;
    while (in.next < in.result.buffers.size()) {
      proto::SharedBuffer& b = in.result.buffers[in.next];
      if (!b.owner) {
        std::shared_ptr<zmq::message_t> message;
        try {
          message = std::make_shared<zmq::message_t>(b.size);
        } catch (const std::exception& e) {  // std::bad_alloc, or zmq::error_t (ENOMEM)
          kill_worker(w, fmt::format("announced a result buffer of {} bytes, which cannot be allocated: {}", b.size,
                                     e.what()));
          return false;
        }
        b.data = static_cast<const char*>(message->data());
        b.owner = std::move(message);
      }
      char* into = const_cast<char*>(b.data) + in.filled;  // the message is ours until it is sent
      std::size_t got = w.reader.take_raw(into, b.size - in.filled);
      if (got == 0 && in.filled < b.size) {
        const ssize_t n = ::recv(w.fd.get(), into, b.size - in.filled, MSG_DONTWAIT);
        if (n <= 0) return recv_again(w, n);
        got = static_cast<std::size_t>(n);
      }
      in.filled += got;
      if (in.filled == b.size) {
        ++in.next;
        in.filled = 0;
      }
    }
    proto::WorkerResult result = std::move(in.result);
    w.incoming.reset();
    finish_result(w, std::move(result));
    return true;
  }

  void on_worker_frame(Worker& w, const proto::Bytes& body) {
    std::string error;
    auto m = proto::decode_from_worker(body.data(), body.size(), &error);
    if (!m) {
      kill_worker(w, fmt::format("sent a malformed frame ({} bytes: {})", body.size(), error));
      return;
    }
    if (auto* ready = std::get_if<proto::WorkerReady>(&*m)) {
      if (core_.is_ready(w.rank)) {
        kill_worker(w, "sent READY twice");
        return;
      }
      if (ready->rank != w.rank)
        log_warn("{} announced rank {}", describe(w, w.pid), ready->rank);
      core_.worker_ready(w.rank);
      consecutive_start_failures_ = 0;
      log_info("{} is ready", describe(w, w.pid));
      return;
    }
    auto& result = std::get<proto::WorkerResult>(*m);
    if (!core_.expects_result(w.rank, result.task_id)) {
      kill_worker(w, fmt::format("sent a result for task {}, which it was not running", result.task_id));
      return;
    }
    sample(w, /*first=*/false, /*last=*/true);
    if (result.buffers.empty())
      finish_result(w, std::move(result));
    else
      w.incoming = Worker::IncomingResult{std::move(result)};  // finished by read_result_buffers()
  }

  void finish_result(Worker& w, proto::WorkerResult result) {
    core_.worker_result(w.rank, std::move(result), Clock::now());
    sample(w, /*first=*/true, /*last=*/false);  // the task it held next starts now: w.end_reading
  }

  // PoolCore decides which worker gets which task (pool_core.cpp); this writes them. Small
  // tasks only join each worker's output here, so that each worker gets its share in one write.
  // Shell commands the core started (arrived, or followers whose input just finished) go to the
  // runner.
  void dispatch() {
    if (exit_status_) return;
    for (ShellStart& s : core_.shell_starts()) shell_->submit(s.task_id, std::move(s.payload));
    core_.shell_starts().clear();
    if (!core_.has_waiting()) return;
    core_.dispatch(Clock::now());
    for (WorkerSend& s : core_.sends()) {
      Worker& w = workers_[static_cast<std::size_t>(s.rank)];
      log_debug("task {} to worker {}", s.task.task_id, s.rank);
      if (s.starts) sample(w, /*first=*/true, /*last=*/false);
      if (!w.dying) send_to_worker(w, proto::ToWorker{std::move(s.task)}, /*defer_small=*/true);
    }
    core_.sends().clear();
    for (Worker& w : workers_)
      if (!w.out.empty()) flush_worker(w);
  }

  // Kills what is left of the worker's group and reaps it. Returns the wait status (or -1).
  static int kill_and_reap(pid_t pid) {
    ::kill(-pid, SIGKILL);  // the zombie leader still reserves the group id
    int status = 0;
    pid_t r;
    do {
      r = ::waitpid(pid, &status, 0);
    } while (r < 0 && errno == EINTR);
    return r == pid ? status : -1;
  }

  void reap_workers() {
    for (Worker& w : workers_) {
      if (w.pid <= 0 || !process_exited(w)) continue;
      if (w.fd.valid()) read_worker(w);  // what it sent before dying still counts
      // Its task's first sample, if held, is all that task leaves (sent before the task's failure).
      release_first_sample(w, std::chrono::duration_cast<std::chrono::microseconds>(
                                  std::chrono::system_clock::now().time_since_epoch()).count(),
                           /*task_ended=*/true);
      const pid_t pid = w.pid;
      const std::string who = fmt::format("{} {}", describe(w, pid), reap(w));
      const bool start_failure = !core_.is_ready(w.rank);
      switch (core_.worker_died(w.rank, who, w.kill_reason)) {
        case DeathOutcome::cancelled:
          log_info("{} stopped: {}", describe(w, pid), w.kill_reason);
          break;
        case DeathOutcome::lost:
          break;  // flush_results() logs the task's failure
        case DeathOutcome::idle:
          log_warn("{}{}", who, w.kill_reason.empty() ? "" : fmt::format(" (the pool killed it: {})", w.kill_reason));
          break;
      }
      w.pid = -1;
      w.fd.reset();
      w.dying = false;
      w.kill_at.reset();
      w.out.clear();
      if (exit_status_ || stopping_) continue;
      if (w.remote && remote_->lost(w.remote_slot)) continue;  // its node is gone: the others go on
      if (start_failure && ++consecutive_start_failures_ >= kMaxStartFailures) {
        fail_broken_environment(who);
        continue;
      }
      start_worker(w);
    }
  }

  void handle_signals() {
    signalfd_siginfo si;
    for (;;) {
      const ssize_t n = ::read(signal_fd_, &si, sizeof si);
      if (n != static_cast<ssize_t>(sizeof si)) break;
      const int sig = static_cast<int>(si.ssi_signo);
      if (sig == SIGCHLD) continue;
      if (!exit_status_) {
        log_info("received signal {} ({}); stopping the workers and exiting", sig, ::strsignal(sig));
        exit_status_ = kExitSignalBase + sig;
      }
    }
    reap_workers();
  }

  // EXIT + SIGTERM to every worker's group, SIGKILL after kKillGrace, and reap all.
  void stop_workers() {
    stopping_ = true;
    bool any = false;
    for (Worker& w : workers_) {
      if (w.pid <= 0) continue;
      any = true;
      if (w.fd.valid() && core_.is_ready(w.rank) && !w.dying && w.out.empty())
        send_to_worker(w, proto::ToWorker{proto::WorkerExit{}});
      signal_worker(w, SIGTERM, /*stop_commands=*/!process_exited(w));
    }
    if (!any) {
      kill_stopped_commands(Clock::time_point::max());
      return;
    }
    const auto deadline = Clock::now() + kKillGrace;
    for (;;) {
      bool all_exited = true;
      for (const Worker& w : workers_)
        if (w.pid > 0 && !process_exited(w)) all_exited = false;
      const long ms = ms_until(deadline);
      if (all_exited || ms == 0) break;
      pollfd p[2]{{signal_fd_, POLLIN, 0}, {wake_fd_.get(), POLLIN, 0}};  // SIGCHLD, or a remote worker ended
      if (::poll(p, wake_fd_.valid() ? 2 : 1, static_cast<int>(ms)) > 0) {
        signalfd_siginfo si;
        while (::read(signal_fd_, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
        }
        if (p[1].revents) {
          std::uint64_t v;
          [[maybe_unused]] ssize_t n = ::read(wake_fd_.get(), &v, sizeof v);
        }
      }
    }
    for (Worker& w : workers_) {
      if (w.pid <= 0) continue;
      const bool was_running = !process_exited(w);
      if (was_running && w.remote) {  // its rank kills it when the pool's end tells the ranks to stop
        signal_worker(w, SIGKILL, false);
        log_info("{} still running after the grace period: its rank kills it", describe(w, w.pid));
      } else {
        log_info("{} stopped: {}{}", describe(w, w.pid), reap(w), was_running ? " (killed after the grace period)" : "");
      }
      w.pid = -1;
      w.fd.reset();
    }
    kill_stopped_commands(Clock::time_point::max());
  }

  PoolOptions o_;
  int signal_fd_;
  RemoteWorkers* remote_;  // pervade-exex-pool's other ranks; null in pervade-pool
  int worker_count_ = 1;   // this node's workers (slots 0..worker_count_-1)
  std::vector<std::vector<int>> worker_cpus_;  // per rank, with --cpu-affinity; else empty
  std::optional<MpiBlock> mpi_block_;          // MPI mode: the block's nodes, until PoolCore takes them
  std::vector<std::pair<pid_t, Clock::time_point>> stopping_commands_;  // bash commands' groups, SIGKILL then
  NodeCapacity node_capacity_;
  std::string hostname_;
  std::string worker_log_dir_;  // --log-dir/<pool id> when it could be made: workers log there too
  std::string endpoint_;
  bool ipv6_ = false;
  bool same_host_ = false;  // connected to the interchange's same-host (ipc://) socket
  std::string python_version_;
  double period_ = 30;
  double threshold_ = 120;
  // --walltime: when the pool stops running tasks (SIGTERM to those that run) and when it exits.
  Clock::time_point stop_tasks_at_ = Clock::time_point::max();
  Clock::time_point drain_at_ = Clock::time_point::max();  // --drain-period after the start
  Clock::time_point block_end_ = Clock::time_point::max();
  bool terminated_ = false;  // terminate_tasks() ran

  Fd wake_fd_;
  zmq::context_t ctx_;
  zmq::socket_t dealer_;
  zmq::socket_t monitor_;  // events of dealer_ (connected, disconnected)
  std::optional<Clock::time_point> disconnected_at_;  // the connection closed and is not back
  int linger_ms_ = 0;
  // Messages for the interchange that ZeroMQ did not take yet: the first frame, then the others.
  struct Outgoing {
    proto::Bytes body;
    std::vector<proto::SharedBuffer> frames;
  };
  std::deque<Outgoing> outq_;
  Clock::time_point last_recv_, last_send_;

  std::vector<Worker> workers_;  // by rank, as PoolCore's slots
  PoolCore core_{PoolCoreConfig{}};
  std::unique_ptr<ShellRunner> shell_;
  // Resource sampling (REGISTERED's resource_interval >= 0; off by default, then no cost).
  double sample_interval_ = -1;
  Clock::time_point next_sample_ = Clock::time_point::max();
  std::vector<proto::UsageSample> usage_;  // sent in USAGE before the next RESULTS

  bool stopping_ = false;
  bool torn_down_ = false;
  int consecutive_start_failures_ = 0;
  std::optional<int> exit_status_;
};

// ------------------------------------------------------------------------------ options
bool parse_int(const std::string& s, int* out) {
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc{} && ptr == s.data() + s.size();
}

bool parse_double(const std::string& s, double* out) {
  if (s.empty()) return false;
  char* end = nullptr;
  errno = 0;
  *out = std::strtod(s.c_str(), &end);
  return errno == 0 && end == s.c_str() + s.size() && std::isfinite(*out);
}

}  // namespace

std::string usage_text() {
  return R"(usage: pervade-pool --address HOST:PORT [options]

The per-node process of pervade's HighThroughputExecutor: connects to the interchange,
starts Python workers (python -m pervade.worker), runs their tasks and shell tasks.

options:
  --address HOST:PORT          the interchange's address (IPv6: [::1]:5555); required
  --pool-id ID                 this pool's id (default: hostname-pid)
  --block-id ID                the block this pool belongs to (default: 0)
  --max-workers N              start at most N workers (default: no bound)
  --cores-per-worker F         CPUs per worker, may be fractional (default: 1)
  --mem-per-worker GB          GiB of memory per worker (default: 0, memory not considered)
  --workers N                  start exactly N workers (instead of the three options above)
  --prefetch N                 tasks held beyond the workers (default: 0)
  --python PATH                interpreter for the workers (default: python3)
  --no-python                  start no Python workers; run shell tasks only
  --python-version X.Y.Z       version to register (default: ask the interpreter)
  --heartbeat-period S         seconds of silence before a heartbeat (default: 30)
  --heartbeat-threshold S      seconds without news before giving up (default: 120)
  --curve-server-key FILE      CurveZMQ: file with the interchange's Z85 public key
  --curve-client-keys FILE     CurveZMQ: file with this pool's Z85 public then secret key
                               (default with --curve-server-key: a fresh key pair)
  --ipc ipc://PATH             the interchange's same-host socket: used instead of --address
                               (without CurveZMQ) when --host-id is this host's and the socket
                               accepts a connection; otherwise --address is used
  --host-id ID                 the interchange's host (boot id and network namespace)
  --log FILE                   log to FILE (default: stderr)
  --log-dir DIR                also write the pool's lines to DIR/<pool id>/pool.log and each
                               worker's records to DIR/<pool id>/worker_<rank>.log
  --log-level LEVEL            debug, info (default), warning or error: the pool's lines below
                               it are not written; the workers log at the same level
  --log-limit BYTES            stdout and stderr (the block log, with the tasks' output):
                               a file past BYTES is renamed to NAME.1 and started afresh,
                               so at most twice BYTES are kept (default: 16 MiB; 0: no cap)
  --cpu-affinity MODE          pin workers to CPUs (default: none); MODE is one of
                                 block          worker i: CPUs [i*P, (i+1)*P) of the pool's
                                                CPUs, P = max(1, CPUs / workers)
                                 block-reverse  the same, from the last block
                                 alternating    worker i: CPUs i, i+W, i+2W... (W workers)
                                 list:C:C:...   worker i: the i-th C, CPU numbers and ranges
                                                separated by commas (list:0,1:2-3); one C per
                                                worker at least
                               pinned workers get OMP_NUM_THREADS, GOMP_CPU_AFFINITY and
                               KMP_AFFINITY for their CPUs
  --available-accelerators A,B,...
                               pin worker i to accelerator i (CUDA_VISIBLE_DEVICES etc.);
                               at most one worker per accelerator
  --mpi-launcher L             MPI mode: mpiexec, srun or aprun, the launcher PARSL_MPI_PREFIX
                               names; MPI tasks get nodes of the block (docs/mpi.md)
  --mpi-hosts H,H:C,...        MPI mode: the block's nodes (HOST or HOST:CORES, cores for all
                               or none); default: SLURM_NODELIST (scontrol show hostnames) or
                               PBS_NODEFILE
  --walltime S                 the block's job ends S seconds after the pool starts: the
                               pool exits then (default: 0, no end)
  --walltime-grace S           seconds before that end when running tasks get SIGTERM, tasks
                               whose running_time would end later are not started, and the
                               interchange drains the pool (default: 30)
  --drain-period S             S seconds after the pool starts the interchange drains it: it
                               gets no new task and exits once its tasks ended (Parsl's
                               drain_period; default: 0, never)
  -h, --help                   show this help

workers: without --workers the pool starts min(--max-workers, CPUs / --cores-per-worker,
available memory / --mem-per-worker, number of accelerators) workers, at least 1, counting
the CPUs it may run on (sched_getaffinity) and MemAvailable of /proc/meminfo (rounded to
0.1 GiB). PARSL_CORES and PARSL_MEMORY_GB in the environment replace the two, as in Parsl.
The log says how the count was decided.

exit status: 0 done (DRAIN, SHUTDOWN or interchange gone), 1 internal error, 2 bad usage,
3 refused by the interchange, 4 no answer to REGISTER, 5 workers cannot start (broken
Python environment), 128+N stopped by signal N.
)";
}

std::optional<std::string> zmq_endpoint(const std::string& address, bool* ipv6, std::string* error) {
  std::string a = address;
  if (a.rfind("tcp://", 0) == 0) a = a.substr(6);
  std::string host, port;
  *ipv6 = false;
  if (!a.empty() && a[0] == '[') {
    const auto close = a.find(']');
    if (close == std::string::npos || close + 1 >= a.size() || a[close + 1] != ':') {
      *error = fmt::format("bad address '{}': expected [IPV6]:PORT", address);
      return std::nullopt;
    }
    host = a.substr(0, close + 1);
    port = a.substr(close + 2);
    *ipv6 = true;
  } else {
    const auto colon = a.rfind(':');
    if (colon == std::string::npos) {
      *error = fmt::format("bad address '{}': expected HOST:PORT", address);
      return std::nullopt;
    }
    host = a.substr(0, colon);
    port = a.substr(colon + 1);
    if (host.find(':') != std::string::npos) {
      *error = fmt::format("bad address '{}': write IPv6 addresses in brackets, e.g. [::1]:5555", address);
      return std::nullopt;
    }
  }
  int p = 0;
  if (host.empty() || host == "[]" || !parse_int(port, &p) || p < 1 || p > 65535) {
    *error = fmt::format("bad address '{}': expected HOST:PORT with a port in 1..65535", address);
    return std::nullopt;
  }
  return fmt::format("tcp://{}:{}", host, p);
}

bool can_use_same_host_socket(const std::string& ipc_url, const std::string& host_id, std::string* why) {
  const std::string ours = detail::same_host_id();
  if (ours.empty() || ours != host_id) {
    *why = fmt::format("not on the interchange's host (this host '{}', the interchange's '{}')", ours, host_id);
    return false;
  }
  const std::string path = ipc_url.substr(6);
  sockaddr_un addr{};
  if (path.size() >= sizeof addr.sun_path) {
    *why = fmt::format("the path '{}' is too long for a Unix socket", path);
    return false;
  }
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) {
    *why = fmt::format("socket: {}", os_error(errno));
    return false;
  }
  int rc;
  do {
    rc = ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  } while (rc != 0 && errno == EINTR);
  // EAGAIN: the listener's backlog is full, so it is there and listening.
  if (rc != 0 && errno != EAGAIN) {
    *why = fmt::format("cannot connect to '{}': {}", path, os_error(errno));
    return false;
  }
  return true;
}

ParseResult parse_command_line(int argc, char** argv) {
  ParseResult result;
  PoolOptions o;
  bool bounded = false;  // --max-workers, --cores-per-worker or --mem-per-worker given
  auto fail = [&](std::string message) {
    result.error = std::move(message);
    result.options.reset();
    return result;
  };
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    std::optional<std::string> inline_value;
    if (arg.rfind("--", 0) == 0) {
      const auto eq = arg.find('=');
      if (eq != std::string::npos) {
        inline_value = arg.substr(eq + 1);
        arg = arg.substr(0, eq);
      }
    }
    if (arg == "-h" || arg == "--help") {
      result.help = true;
      return result;
    }
    if (arg == "--no-python") {
      if (inline_value) return fail("--no-python takes no value");
      o.no_python = true;
      continue;
    }
    static const char* const kValued[] = {
        "--address", "--pool-id", "--block-id", "--workers", "--prefetch", "--python", "--python-version",
        "--heartbeat-period", "--heartbeat-threshold", "--curve-server-key", "--curve-client-keys", "--log", "--log-dir",
        "--log-level", "--log-limit", "--ipc", "--host-id",
        "--cpu-affinity", "--available-accelerators", "--max-workers", "--cores-per-worker", "--mem-per-worker",
        "--mpi-launcher", "--mpi-hosts", "--walltime", "--walltime-grace", "--drain-period"};
    if (std::find(std::begin(kValued), std::end(kValued), arg) == std::end(kValued))
      return fail(fmt::format("unknown option '{}'", arg));
    std::string value;
    if (inline_value) {
      value = *inline_value;
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      return fail(fmt::format("{} needs a value", arg));
    }
    if (arg == "--address") {
      o.address = value;
    } else if (arg == "--pool-id") {
      if (value.empty() || value.size() > 255) return fail("--pool-id must have 1 to 255 characters");
      o.pool_id = value;
    } else if (arg == "--block-id") {
      o.block_id = value;
    } else if (arg == "--workers") {
      if (!parse_int(value, &o.workers) || o.workers < 1) return fail("--workers must be an integer >= 1");
    } else if (arg == "--max-workers") {
      if (!parse_int(value, &o.max_workers) || o.max_workers < 1) return fail("--max-workers must be an integer >= 1");
      bounded = true;
    } else if (arg == "--cores-per-worker") {
      if (!parse_double(value, &o.cores_per_worker) || o.cores_per_worker <= 0)
        return fail(fmt::format("--cores-per-worker must be a number > 0, got '{}'", value));
      bounded = true;
    } else if (arg == "--walltime") {
      if (!parse_double(value, &o.walltime) || !(o.walltime >= 0) || !std::isfinite(o.walltime))
        return fail(fmt::format("--walltime must be a number of seconds >= 0, got '{}'", value));
    } else if (arg == "--walltime-grace") {
      if (!parse_double(value, &o.walltime_grace) || !(o.walltime_grace >= 0) || !std::isfinite(o.walltime_grace))
        return fail(fmt::format("--walltime-grace must be a number of seconds >= 0, got '{}'", value));
    } else if (arg == "--drain-period") {
      if (!parse_double(value, &o.drain_period) || !(o.drain_period >= 0) || !std::isfinite(o.drain_period))
        return fail(fmt::format("--drain-period must be a number of seconds >= 0, got '{}'", value));
    } else if (arg == "--mem-per-worker") {
      if (!parse_double(value, &o.mem_per_worker) || o.mem_per_worker < 0)
        return fail(fmt::format("--mem-per-worker must be a number of GiB >= 0, got '{}'", value));
      bounded = true;
    } else if (arg == "--prefetch") {
      if (!parse_int(value, &o.prefetch) || o.prefetch < 0) return fail("--prefetch must be an integer >= 0");
    } else if (arg == "--python") {
      if (value.empty()) return fail("--python must not be empty");
      o.python = value;
    } else if (arg == "--python-version") {
      o.python_version = value;
    } else if (arg == "--heartbeat-period") {
      if (!parse_double(value, &o.heartbeat_period) || o.heartbeat_period <= 0)
        return fail("--heartbeat-period must be a number of seconds > 0");
    } else if (arg == "--heartbeat-threshold") {
      if (!parse_double(value, &o.heartbeat_threshold) || o.heartbeat_threshold <= 0)
        return fail("--heartbeat-threshold must be a number of seconds > 0");
    } else if (arg == "--curve-server-key") {
      o.curve_server_key_file = value;
    } else if (arg == "--curve-client-keys") {
      o.curve_client_keys_file = value;
    } else if (arg == "--log") {
      o.log_file = value;
    } else if (arg == "--log-dir") {
      o.log_dir = value;
    } else if (arg == "--log-level") {
      static const std::pair<const char*, int> kLevels[] = {{"debug", 10}, {"info", 20}, {"warning", 30}, {"error", 40}};
      const auto* level = std::find_if(std::begin(kLevels), std::end(kLevels), [&](auto& l) { return value == l.first; });
      if (level == std::end(kLevels)) return fail("--log-level must be debug, info, warning or error");
      o.log_level = level->second;
    } else if (arg == "--log-limit") {
      char* end = nullptr;
      errno = 0;
      o.log_limit = std::strtoull(value.c_str(), &end, 10);
      if (value.empty() || !std::isdigit(static_cast<unsigned char>(value[0])) || *end || errno)
        return fail("--log-limit must be a number of bytes");
    } else if (arg == "--ipc") {
      if (value.rfind("ipc://", 0) != 0 || value.size() == 6) return fail("--ipc must be ipc://PATH");
      o.ipc_url = value;
    } else if (arg == "--host-id") {
      o.host_id = value;
    } else if (arg == "--cpu-affinity") {
      std::string error;
      auto affinity = parse_cpu_affinity(value, &error);
      if (!affinity) return fail("--cpu-affinity: " + error);
      o.cpu_affinity = value;
      o.affinity = std::move(*affinity);
    } else if (arg == "--available-accelerators") {
      o.accelerators.clear();
      std::size_t start = 0;
      while (start <= value.size()) {
        const auto comma = value.find(',', start);
        const std::string item = trim(value.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
        if (!item.empty()) o.accelerators.push_back(item);
        if (comma == std::string::npos) break;
        start = comma + 1;
      }
      if (o.accelerators.empty()) return fail("--available-accelerators needs at least one accelerator");
    } else if (arg == "--mpi-launcher") {
      if (value != "mpiexec" && value != "srun" && value != "aprun")
        return fail(fmt::format("--mpi-launcher must be mpiexec, srun or aprun, got '{}'", value));
      o.mpi_launcher = value;
    } else if (arg == "--mpi-hosts") {
      std::string error;
      if (!parse_mpi_hosts(value, &error)) return fail(error);
      o.mpi_hosts = value;
    } else {
      return fail(fmt::format("unknown option '{}'", arg));
    }
  }
  if (o.address.empty()) return fail("--address HOST:PORT is required");
  if (!o.mpi_hosts.empty() && o.mpi_launcher.empty()) return fail("--mpi-hosts needs --mpi-launcher");
  if (o.workers > 0 && bounded)
    return fail("--workers N is an exact worker count; it cannot be combined with --max-workers, "
                "--cores-per-worker or --mem-per-worker");
  if (!o.curve_client_keys_file.empty() && o.curve_server_key_file.empty())
    return fail("--curve-client-keys needs --curve-server-key");
  bool ipv6 = false;
  std::string error;
  if (!zmq_endpoint(o.address, &ipv6, &error)) return fail(error);
  result.options = std::move(o);
  return result;
}

int run_pool(PoolOptions options, RemoteWorkers* remote) {
  mark_inherited_fds_cloexec();

  // Before any thread exists: these signals become events of the main loop (signalfd) in
  // every thread; SIGPIPE is ignored (socket writes use MSG_NOSIGNAL anyway).
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGCHLD, SIGTERM, SIGINT, SIGHUP}) sigaddset(&set, sig);
  if (int rc = pthread_sigmask(SIG_BLOCK, &set, nullptr); rc != 0) {
    std::fprintf(stderr, "pervade-pool: pthread_sigmask: %s\n", os_error(rc).c_str());
    return kExitError;
  }
  ::signal(SIGPIPE, SIG_IGN);
  Fd signal_fd(::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
  if (!signal_fd.valid()) {
    std::fprintf(stderr, "pervade-pool: signalfd: %s\n", os_error(errno).c_str());
    return kExitError;
  }

  // Before any worker starts: they inherit the capped outputs.
  OutputCap output(options.log_limit);

  std::string error;
  logger().set_level(options.log_level);
  if (!logger().open(options.log_file, &error)) {
    std::fprintf(stderr, "pervade-pool: %s\n", error.c_str());
    return kExitUsage;
  }

  int status = kExitError;
  {
    Pool pool(std::move(options), signal_fd.get(), remote);
    try {
      status = pool.run();
    } catch (const std::exception& e) {
      log_error("fatal error: {}", e.what());
      status = kExitError;
    }
    pool.teardown();
  }
  log_info("exiting with status {}", status);
  return status;
}

}  // namespace pervade::pool
