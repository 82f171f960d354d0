// Tests for pervade-pool (src/pool): the REAL binary runs against a fake interchange (a ZeroMQ
// ROUTER on 127.0.0.1) implemented here.
//
// Synchronisation rule: no test sleeps to "let something happen". Tests wait for messages with
// zmq poll deadlines, for processes with pidfds, for shell commands with FIFOs they write to.
// The one polling loop (descendants of the test process dying after SIGKILL) checks a real
// condition under a deadline.
//
// Every test runs with the test process as a child subreaper, so whatever the pool leaves
// behind is re-parented to the test process, where the fixture can see it (a test fails if
// something is still alive after the pool exited) and kills and reaps it in TearDown.
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "pool/resources.hpp"
#include "protocol/messages.hpp"
#include "util/same_host.hpp"

#ifndef PERVADE_POOL_BINARY
#error "PERVADE_POOL_BINARY must be the path of the pervade-pool executable"
#endif
#ifndef PERVADE_TEST_VERSION
#error "PERVADE_TEST_VERSION must be the project version"
#endif

extern char** environ;

namespace {

namespace fs = std::filesystem;
namespace proto = pervade::protocol;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr auto kDeadline = 15s;        // anything that should be quick
constexpr auto kPythonDeadline = 60s;  // anything that needs Python workers to start

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string this_hostname() {
  char buf[256] = {};
  gethostname(buf, sizeof buf - 1);
  return buf;
}

int cpu_count() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) return CPU_COUNT(&set);
  return static_cast<int>(std::thread::hardware_concurrency());
}

// ------------------------------------------------------------------------ processes
struct ProcInfo {
  pid_t ppid = 0;
  char state = '?';
};

// pid -> (parent, state) for every process, from /proc/<pid>/stat.
std::map<pid_t, ProcInfo> process_table() {
  std::map<pid_t, ProcInfo> table;
  DIR* dir = opendir("/proc");
  if (dir == nullptr) return table;
  while (dirent* e = readdir(dir)) {
    char* end = nullptr;
    const long pid = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0') continue;
    const std::string stat = read_file(fs::path("/proc") / e->d_name / "stat");
    const auto close = stat.rfind(')');
    if (close == std::string::npos || close + 4 >= stat.size()) continue;
    ProcInfo info;
    info.state = stat[close + 2];
    info.ppid = static_cast<pid_t>(std::strtol(stat.c_str() + close + 4, nullptr, 10));
    table[static_cast<pid_t>(pid)] = info;
  }
  closedir(dir);
  return table;
}

std::vector<pid_t> children_of(pid_t parent) {
  std::vector<pid_t> out;
  for (const auto& [pid, info] : process_table())
    if (info.ppid == parent) out.push_back(pid);
  return out;
}

// All descendants of `root` that are not zombies.
std::vector<pid_t> live_descendants(pid_t root) {
  const auto table = process_table();
  std::vector<pid_t> out;
  std::vector<pid_t> frontier{root};
  while (!frontier.empty()) {
    const pid_t p = frontier.back();
    frontier.pop_back();
    for (const auto& [pid, info] : table) {
      if (info.ppid != p) continue;
      frontier.push_back(pid);
      if (info.state != 'Z' && info.state != 'X') out.push_back(pid);
    }
  }
  return out;
}

void reap_zombie_children() {
  int status;
  while (waitpid(-1, &status, WNOHANG) > 0) {
  }
}

// Waits until the test process has no live descendants (reaping the dead ones); returns those
// still alive at the deadline.
std::vector<pid_t> wait_no_live_descendants(Clock::duration timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    reap_zombie_children();
    auto alive = live_descendants(getpid());
    if (alive.empty() || Clock::now() >= deadline) return alive;
    std::this_thread::sleep_for(10ms);  // polling a real condition (processes dying after SIGKILL)
  }
}

std::string describe_pids(const std::vector<pid_t>& pids) {
  std::string s;
  for (pid_t p : pids) {
    std::string cmd = read_file(fs::path("/proc") / std::to_string(p) / "cmdline");
    std::replace(cmd.begin(), cmd.end(), '\0', ' ');
    s += std::to_string(p) + " [" + cmd + "] ";
  }
  return s;
}

int decode_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

// Runs a command to completion; returns (exit status, stdout).
std::pair<int, std::string> run_capture(const std::vector<std::string>& args) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return {-1, ""};
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, p[1], 1);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  std::vector<std::string> copy = args;
  std::vector<char*> argv;
  for (auto& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  close(p[1]);
  if (rc != 0) {
    close(p[0]);
    return {-1, ""};
  }
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(p[0], buf, sizeof buf)) != 0) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  close(p[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return {decode_status(status), out};
}

std::string from_hex(const std::string& h) {
  std::string out;
  for (std::size_t i = 0; i + 1 < h.size(); i += 2) out.push_back(static_cast<char>(std::stoi(h.substr(i, 2), nullptr, 16)));
  return out;
}

std::string to_hex(const std::string& b) {
  static const char* d = "0123456789abcdef";
  std::string out;
  for (unsigned char c : b) {
    out.push_back(d[c >> 4]);
    out.push_back(d[c & 15]);
  }
  return out;
}

std::vector<std::string> lines(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(line);
  return out;
}

// repr() of a pickled value, computed by python3.
std::string python_unpickle_repr(const std::string& pickled) {
  auto [status, out] = run_capture(
      {"python3", "-c", "import pickle,sys;print(repr(pickle.loads(bytes.fromhex(sys.argv[1]))))", to_hex(pickled)});
  if (status != 0) return "<python3 failed>";
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

// A FIFO that shell commands write to ("echo started > fifo"), so a test can wait for a
// command to really have started.
class Fifo {
 public:
  explicit Fifo(fs::path path) : path_(std::move(path)) {
    // Opened read-write (Linux allows it for FIFOs) so that there is always a writer: no POLLHUP
    // between the writers' opens and closes.
    if (mkfifo(path_.c_str(), 0600) == 0) fd_ = open(path_.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
  }
  ~Fifo() {
    if (fd_ >= 0) close(fd_);
  }
  const fs::path& path() const { return path_; }
  const std::string& data() const { return data_; }
  // For a FIFO that a child reads from (`read line < fifo`).
  bool write_line() { return fd_ >= 0 && write(fd_, "go\n", 3) == 3; }
  bool wait_readable(Clock::duration timeout) {
    if (fd_ < 0) return false;
    pollfd p{fd_, POLLIN, 0};
    const int ms = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(timeout).count());
    return poll(&p, 1, ms) > 0 && (p.revents & POLLIN);
  }
  // Reads until `n` lines arrived (from any number of writers).
  bool wait_lines(int n, Clock::duration timeout) {
    const auto deadline = Clock::now() + timeout;
    while (std::count(data_.begin(), data_.end(), '\n') < n) {
      const auto left = deadline - Clock::now();
      if (left <= 0s || !wait_readable(left)) return false;
      char buf[256];
      const ssize_t r = read(fd_, buf, sizeof buf);
      if (r > 0) data_.append(buf, static_cast<std::size_t>(r));
    }
    return true;
  }

 private:
  fs::path path_;
  int fd_ = -1;
  std::string data_;
};

// ------------------------------------------------------------------------ the pool process
class PoolProcess {
 public:
  ~PoolProcess() { kill_and_reap(); }

  // extra_env: NAME=VALUE entries added to (or replacing those of) this process's environment.
  void start(const std::vector<std::string>& args, const fs::path& dir, const std::vector<std::string>& extra_env = {}) {
    std::vector<std::string> env;
    for (char** e = environ; *e != nullptr; ++e) {
      const std::string entry(*e);
      const std::string name = entry.substr(0, entry.find('=') + 1);
      if (std::none_of(extra_env.begin(), extra_env.end(), [&](const std::string& x) { return x.rfind(name, 0) == 0; }))
        env.push_back(entry);
    }
    env.insert(env.end(), extra_env.begin(), extra_env.end());
    std::vector<char*> envp;
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    std::vector<std::string> copy{PERVADE_POOL_BINARY};
    copy.insert(copy.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    const std::string out = (dir / "pool.stdout").string();
    const std::string err = (dir / "pool.stderr").string();
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_addopen(&fa, 2, err.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    const int rc = posix_spawn(&pid_, argv[0], &fa, &attr, argv.data(), envp.data());
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    ASSERT_EQ(rc, 0) << "cannot start " << PERVADE_POOL_BINARY << ": " << std::strerror(rc);
    const long fd = syscall(SYS_pidfd_open, static_cast<long>(pid_), 0L);
    pidfd_ = fd >= 0 ? static_cast<int>(fd) : -1;
  }

  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0 && !status_; }

  // Waits for the pool to exit; returns its status (exit code, or 128 + signal).
  std::optional<int> wait_exit(Clock::duration timeout) {
    if (status_) return status_;
    if (pid_ <= 0) return std::nullopt;
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      int status = 0;
      const pid_t r = waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        status_ = decode_status(status);
        close_pidfd();
        return status_;
      }
      const auto left = deadline - Clock::now();
      if (left <= 0s) return std::nullopt;
      const int ms = static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(left).count());
      if (pidfd_ >= 0) {
        pollfd p{pidfd_, POLLIN, 0};
        poll(&p, 1, ms);
      } else {
        std::this_thread::sleep_for(std::min(10ms, std::chrono::milliseconds(ms)));  // no pidfd: poll
      }
    }
  }

  void signal(int sig) {
    if (running()) kill(pid_, sig);
  }

  void kill_and_reap() {
    if (pid_ > 0 && !status_) {
      kill(-pid_, SIGKILL);
      int status = 0;
      while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
      }
      status_ = decode_status(status);
    }
    close_pidfd();
  }

 private:
  void close_pidfd() {
    if (pidfd_ >= 0) close(pidfd_);
    pidfd_ = -1;
  }
  pid_t pid_ = -1;
  int pidfd_ = -1;
  std::optional<int> status_;
};

// ------------------------------------------------------------------------ fake interchange
class FakeInterchange {
 public:
  // curve_secret_key: Z85 secret key to act as a CurveZMQ server with.
  explicit FakeInterchange(bool ipv6 = false, const std::string& curve_secret_key = "")
      : socket_(ctx_, zmq::socket_type::router) {
    socket_.set(zmq::sockopt::linger, 0);
    if (!curve_secret_key.empty()) {
      socket_.set(zmq::sockopt::curve_server, 1);
      zmq_setsockopt(socket_.handle(), ZMQ_CURVE_SECRETKEY, curve_secret_key.c_str(), 41);
    }
    if (ipv6) {
      socket_.set(zmq::sockopt::ipv6, 1);
      socket_.bind("tcp://[::1]:*");
    } else {
      socket_.bind("tcp://127.0.0.1:*");
    }
    const std::string endpoint = socket_.get(zmq::sockopt::last_endpoint);  // tcp://127.0.0.1:PORT
    address_ = endpoint.substr(std::strlen("tcp://"));
  }

  const std::string& address() const { return address_; }
  const std::string& identity() const { return identity_; }
  // As when the driver dies: the socket closes and its TCP connections with it.
  void close() { socket_.close(); }

  struct Incoming {
    std::string identity;
    std::optional<proto::PoolMessage> message;
    std::string error;
  };

  std::optional<Incoming> recv(Clock::duration timeout) {
    zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
    const auto ms = std::chrono::ceil<std::chrono::milliseconds>(std::max<Clock::duration>(timeout, 0s));
    zmq::poll(&item, 1, ms);
    if (!(item.revents & ZMQ_POLLIN)) return std::nullopt;
    std::vector<zmq::message_t> frames;
    if (!zmq::recv_multipart(socket_, std::back_inserter(frames), zmq::recv_flags::dontwait)) return std::nullopt;
    Incoming in;
    if (frames.size() < 2) {
      in.error = "expected at least 2 frames, got " + std::to_string(frames.size());
      return in;
    }
    in.identity = frames[0].to_string();
    // The frames after the message are its results' out-of-band buffers, which keep them.
    std::vector<proto::SharedBuffer> body;
    for (std::size_t i = 1; i < frames.size(); ++i) {
      auto frame = std::make_shared<zmq::message_t>(std::move(frames[i]));
      body.push_back({frame, static_cast<const char*>(frame->data()), frame->size()});
    }
    in.message = proto::decode_pool_message(body, &in.error);
    if (identity_.empty()) identity_ = in.identity;
    return in;
  }

  // Receives until a message of type T arrives (others are appended to *skipped if given).
  template <typename T>
  std::optional<T> expect(Clock::duration timeout, std::vector<proto::PoolMessage>* skipped = nullptr) {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      auto in = recv(deadline - Clock::now());
      if (!in) continue;
      if (!in->message) {
        ADD_FAILURE() << "the pool sent an undecodable message: " << in->error;
        continue;
      }
      if (auto* t = std::get_if<T>(&*in->message)) return *t;
      if (skipped) skipped->push_back(*in->message);
    }
    return std::nullopt;
  }

  // Receives until results for `n` tasks arrived; returns them by task id. *order gets every
  // message type index in arrival order if given.
  std::map<std::uint64_t, proto::TaskResult> results(std::size_t n, Clock::duration timeout,
                                                     std::vector<std::size_t>* order = nullptr) {
    std::map<std::uint64_t, proto::TaskResult> got;
    const auto deadline = Clock::now() + timeout;
    while (got.size() < n && Clock::now() < deadline) {
      auto in = recv(deadline - Clock::now());
      if (!in || !in->message) continue;
      if (order) order->push_back(in->message->index());
      if (auto* r = std::get_if<proto::Results>(&*in->message))
        for (auto& one : r->results) got[one.task_id] = one;
    }
    return got;
  }

  void send(const proto::InterchangeMessage& m) { send_raw(proto::encode(m)); }

  void send_raw(const std::string& body) {
    ASSERT_FALSE(identity_.empty()) << "no pool has spoken yet";
    socket_.send(zmq::buffer(identity_), zmq::send_flags::sndmore);
    socket_.send(zmq::buffer(body), zmq::send_flags::none);
  }

  void send_frames(const std::vector<std::string>& bodies) {
    socket_.send(zmq::buffer(identity_), zmq::send_flags::sndmore);
    for (std::size_t i = 0; i < bodies.size(); ++i)
      socket_.send(zmq::buffer(bodies[i]), i + 1 < bodies.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
  }

 private:
  zmq::context_t ctx_;
  zmq::socket_t socket_;
  std::string address_;
  std::string identity_;
};

proto::Task shell_task(std::uint64_t id, const std::string& command, double walltime = 0,
                       const std::string& stdout_path = "", const std::string& stderr_path = "") {
  proto::ShellPayload p;
  p.command = command;
  p.stdout_path = stdout_path;
  p.stdout_append = false;
  p.stderr_path = stderr_path;
  p.stderr_append = false;
  p.walltime = walltime;
  proto::Task t;
  t.task_id = id;
  t.kind = proto::kKindShell;
  t.fn_hash = "";
  t.payload = proto::encode_shell_payload(p);
  return t;
}

proto::Tasks tasks_of(std::vector<proto::Task> v) {
  proto::Tasks t;
  t.tasks = std::move(v);
  return t;
}

std::optional<int> exit_code_of(const proto::TaskResult& r) {
  return proto::decode_exit_code(r.payload.data(), r.payload.size());
}

// ------------------------------------------------------------------------ the fixture
class ProcessPoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    char tmpl[] = "/tmp/pervade-pool-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    log_ = dir_ / "pool.log";
  }

  void TearDown() override {
    pool_.kill_and_reap();
    // Whatever is left (workers orphaned by a SIGKILLed pool, ...): kill it and reap it.
    const auto deadline = Clock::now() + kDeadline;
    for (;;) {
      auto alive = live_descendants(getpid());
      for (pid_t p : alive) kill(p, SIGKILL);
      reap_zombie_children();
      if (alive.empty() || Clock::now() >= deadline) break;
      std::this_thread::sleep_for(10ms);
    }
    reap_zombie_children();
    prctl(PR_SET_CHILD_SUBREAPER, 0);
    if (HasFailure() || std::getenv("PERVADE_POOL_TEST_SHOW_LOG") != nullptr) {
      std::cerr << "---- pool log (" << log_ << ")\n" << read_file(log_) << "---- pool stderr\n"
                << read_file(dir_ / "pool.stderr") << "----\n";
    }
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  std::vector<std::string> args(std::vector<std::string> extra) {
    std::vector<std::string> a{"--address", ix_.address(), "--log", log_.string()};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }

  // Starts the pool and answers its REGISTER; returns the REGISTER.
  std::optional<proto::Register> start_registered(std::vector<std::string> extra, double period = 30,
                                                  double threshold = 60) {
    pool_.start(args(std::move(extra)), dir_);
    auto reg = ix_.expect<proto::Register>(kDeadline);
    if (!reg) return std::nullopt;
    proto::Registered ok;
    ok.heartbeat_period = period;
    ok.heartbeat_threshold = threshold;
    ix_.send(proto::InterchangeMessage{ok});
    return reg;
  }

  void expect_no_live_descendants() {
    auto alive = wait_no_live_descendants(kDeadline);
    EXPECT_TRUE(alive.empty()) << "processes left behind: " << describe_pids(alive);
  }

  std::string log_text() { return read_file(log_); }

  fs::path dir_;
  fs::path log_;
  FakeInterchange ix_;
  PoolProcess pool_;
};

// ------------------------------------------------------------------------ command line
TEST_F(ProcessPoolTest, HelpAndUsageErrors) {
  auto [help_status, help] = run_capture({PERVADE_POOL_BINARY, "--help"});
  EXPECT_EQ(help_status, 0);
  EXPECT_NE(help.find("--address"), std::string::npos);
  EXPECT_NE(help.find("--available-accelerators"), std::string::npos);
  EXPECT_EQ(run_capture({PERVADE_POOL_BINARY}).first, 2) << "--address is required";
  EXPECT_EQ(run_capture({PERVADE_POOL_BINARY, "--address", "127.0.0.1:5", "--workers", "0"}).first, 2);
  EXPECT_EQ(run_capture({PERVADE_POOL_BINARY, "--address", "127.0.0.1:5", "--bogus"}).first, 2);
  EXPECT_EQ(run_capture({PERVADE_POOL_BINARY, "--address", "no-port"}).first, 2);
  EXPECT_EQ(run_capture({PERVADE_POOL_BINARY, "--address", "::1:5555"}).first, 2) << "IPv6 needs brackets";
  EXPECT_EQ(run_capture({PERVADE_POOL_BINARY, "--address", "127.0.0.1:5", "--cpu-affinity", "weird"}).first, 2);
}

// ------------------------------------------------------------------------ registration
TEST_F(ProcessPoolTest, RegistersWithTheRightFields) {
  auto reg = start_registered({"--no-python", "--workers", "3", "--prefetch", "2", "--pool-id", "pool-a",
                               "--block-id", "b7", "--python-version", "3.99.1"});
  ASSERT_TRUE(reg);
  EXPECT_EQ(reg->protocol_version, proto::kProtocolVersion);
  EXPECT_EQ(reg->pervade_version, PERVADE_TEST_VERSION);
  EXPECT_EQ(reg->python_version, "") << "--no-python registers no Python version";
  EXPECT_EQ(reg->pool_id, "pool-a");
  EXPECT_EQ(reg->block_id, "b7");
  EXPECT_EQ(reg->hostname, this_hostname());
  EXPECT_EQ(reg->worker_count, 3);
  EXPECT_EQ(reg->prefetch, 2);
  EXPECT_EQ(ix_.identity(), "pool-a") << "the DEALER's routing id is the pool id";
  ix_.send(proto::InterchangeMessage{proto::Shutdown{}});
  EXPECT_EQ(pool_.wait_exit(kDeadline), 0);
}

TEST_F(ProcessPoolTest, RegistrationDefaults) {
  auto reg = start_registered({"--no-python"});
  ASSERT_TRUE(reg);
  EXPECT_EQ(reg->pool_id, this_hostname() + "-" + std::to_string(pool_.pid()));
  EXPECT_EQ(reg->block_id, "0");
  EXPECT_EQ(reg->worker_count, cpu_count());
  EXPECT_EQ(reg->prefetch, 0);
  ix_.send(proto::InterchangeMessage{proto::Shutdown{}});
  EXPECT_EQ(pool_.wait_exit(kDeadline), 0);
}

TEST_F(ProcessPoolTest, AcceleratorsLimitTheWorkerCount) {
  auto reg = start_registered({"--no-python", "--workers", "4", "--available-accelerators", "0,1"});
  ASSERT_TRUE(reg);
  EXPECT_EQ(reg->worker_count, 2);
  ix_.send(proto::InterchangeMessage{proto::Shutdown{}});
  EXPECT_EQ(pool_.wait_exit(kDeadline), 0);
}

// ------------------------------------------------------------------------ resources (pure)
// plan_workers() on made-up nodes: the formulas on more CPUs than the test machine has.
namespace res {

using pervade::pool::AffinityMode;
using pervade::pool::CpuAffinity;
using pervade::pool::NodeResources;
using pervade::pool::WorkerPlan;
using pervade::pool::WorkerRequest;
using Cpus = std::vector<std::vector<int>>;

NodeResources node(int cpus, std::optional<double> mem_gb = 31.2) {
  NodeResources n;
  for (int c = 0; c < cpus; ++c) n.cpus.push_back(c);
  n.cpu_count = cpus;
  n.mem_available_gb = mem_gb;
  return n;
}

CpuAffinity affinity(const std::string& spec) {
  std::string error;
  auto a = pervade::pool::parse_cpu_affinity(spec, &error);
  EXPECT_TRUE(a) << spec << ": " << error;
  return a.value_or(CpuAffinity{});
}

WorkerPlan plan(WorkerRequest r, const std::string& spec, const NodeResources& n) {
  return pervade::pool::plan_workers(r, affinity(spec), n);
}

WorkerRequest cores(double cpw, int max_workers = 0, double mem = 0, std::size_t accelerators = 0) {
  WorkerRequest r;
  r.cores_per_worker = cpw;
  r.max_workers = max_workers;
  r.mem_per_worker = mem;
  r.accelerators = accelerators;
  return r;
}

WorkerRequest exactly(int workers) {
  WorkerRequest r;
  r.workers = workers;
  return r;
}

}  // namespace res

TEST(PoolResources, ParsesAffinityModes) {
  std::string error;
  for (const auto& [spec, mode] : std::vector<std::pair<std::string, pervade::pool::AffinityMode>>{
           {"none", res::AffinityMode::kNone},
           {"block", res::AffinityMode::kBlock},
           {"Block-Reverse", res::AffinityMode::kBlockReverse},
           {"alternating", res::AffinityMode::kAlternating},
           {"list:0", res::AffinityMode::kList}}) {
    auto a = pervade::pool::parse_cpu_affinity(spec, &error);
    ASSERT_TRUE(a) << spec << ": " << error;
    EXPECT_EQ(a->mode, mode) << spec;
  }
  auto list = pervade::pool::parse_cpu_affinity("list:0,1:2-4:7,5,5", &error);
  ASSERT_TRUE(list) << error;
  EXPECT_EQ(list->lists, (res::Cpus{{0, 1}, {2, 3, 4}, {5, 7}}));
  for (const char* bad : {"", "weird", "blocks", "list", "list:", "list:0::1", "list:a", "list:0,", "list:3-1",
                          "list:-1", "list:0-", "list:1024", "list:0:1 "}) {
    error.clear();
    EXPECT_FALSE(pervade::pool::parse_cpu_affinity(bad, &error)) << "'" << bad << "' should be refused";
    EXPECT_NE(error.find("cpu affinity"), std::string::npos) << error;
  }
}

TEST(PoolResources, WorkerCountIsTheSmallestBound) {
  const auto n8 = res::node(8, 31.2);
  auto p = res::plan(res::cores(2, 0, 4), "none", n8);
  EXPECT_EQ(p.count, 4);
  EXPECT_EQ(p.reason, "4 workers: 8 CPUs / 2 cores per worker = 4; 31.2 GB available / 4 GB per worker = 7");
  EXPECT_TRUE(p.cpus.empty()) << "not pinned";
  EXPECT_EQ(res::plan(res::cores(1), "none", n8).count, 8);
  EXPECT_EQ(res::plan(res::cores(0.5), "none", n8).count, 16) << "cores_per_worker < 1 oversubscribes";
  EXPECT_EQ(res::plan(res::cores(3), "none", n8).count, 2);
  EXPECT_EQ(res::plan(res::cores(0.3), "none", res::node(3)).count, 10) << "3 / 0.3 is 10, not 9.999...";
  EXPECT_EQ(res::plan(res::cores(1, 3), "none", n8).count, 3);
  EXPECT_EQ(res::plan(res::cores(1, 100), "none", n8).count, 8) << "max is only a bound";
  EXPECT_EQ(res::plan(res::cores(0.25, 0, 10), "none", n8).count, 3) << "31.2 GB / 10 GB";
  EXPECT_EQ(res::plan(res::cores(1, 0, 0, 2), "none", n8).count, 2) << "one worker per accelerator";
  auto all = res::plan(res::cores(0.5, 5, 4, 6), "none", n8);
  EXPECT_EQ(all.count, 5);
  EXPECT_EQ(all.reason, "5 workers: 8 CPUs / 0.5 cores per worker = 16; 31.2 GB available / 4 GB per worker = 7; "
                        "at most 5 (--max-workers); 6 accelerators");
  // At least one worker, with a warning.
  auto starved = res::plan(res::cores(16, 0, 64), "none", n8);
  EXPECT_EQ(starved.count, 1);
  ASSERT_EQ(starved.warnings.size(), 1u);
  EXPECT_NE(starved.warnings[0].find("starting 1 anyway"), std::string::npos) << starved.warnings[0];
  // Unknown memory: not a bound, but said.
  auto nomem = res::plan(res::cores(1, 0, 4), "none", res::node(8, std::nullopt));
  EXPECT_EQ(nomem.count, 8);
  ASSERT_EQ(nomem.warnings.size(), 1u);
  // PARSL_CORES-style count differs from the CPUs the pool may run on: the count uses it.
  auto big = res::node(4);
  big.cpu_count = 16;
  EXPECT_EQ(res::plan(res::cores(2), "none", big).count, 8);
  // --workers is exact (CPUs and memory do not matter), but still one per accelerator.
  auto exact = res::plan(res::exactly(12), "none", n8);
  EXPECT_EQ(exact.count, 12);
  EXPECT_EQ(exact.reason, "12 workers: --workers 12");
  auto gpus = res::exactly(12);
  gpus.accelerators = 4;
  EXPECT_EQ(res::plan(gpus, "none", n8).count, 4);
}

TEST(PoolResources, BlockReverseAndAlternatingCpus) {
  const auto n8 = res::node(8);
  EXPECT_EQ(res::plan(res::exactly(4), "block", n8).cpus, (res::Cpus{{0, 1}, {2, 3}, {4, 5}, {6, 7}}));
  EXPECT_EQ(res::plan(res::exactly(4), "block-reverse", n8).cpus, (res::Cpus{{6, 7}, {4, 5}, {2, 3}, {0, 1}}));
  EXPECT_EQ(res::plan(res::exactly(4), "alternating", n8).cpus, (res::Cpus{{0, 4}, {1, 5}, {2, 6}, {3, 7}}));
  // 3 workers on 8 CPUs: blocks of 8 / 3 = 2 (as Parsl); CPUs 6 and 7 stay free under block.
  EXPECT_EQ(res::plan(res::exactly(3), "block", n8).cpus, (res::Cpus{{0, 1}, {2, 3}, {4, 5}}));
  EXPECT_EQ(res::plan(res::exactly(3), "block-reverse", n8).cpus, (res::Cpus{{4, 5}, {2, 3}, {0, 1}}));
  EXPECT_EQ(res::plan(res::exactly(3), "alternating", n8).cpus, (res::Cpus{{0, 3, 6}, {1, 4, 7}, {2, 5}}));
  // The block size follows the worker count the node allows: 2 cores per worker -> 4 workers
  // of 2 CPUs; at most 2 workers (or 2 accelerators) -> 2 workers of 4 CPUs.
  EXPECT_EQ(res::plan(res::cores(2), "block", n8).cpus, (res::Cpus{{0, 1}, {2, 3}, {4, 5}, {6, 7}}));
  EXPECT_EQ(res::plan(res::cores(1, 2), "block", n8).cpus, (res::Cpus{{0, 1, 2, 3}, {4, 5, 6, 7}}));
  EXPECT_EQ(res::plan(res::cores(1, 0, 0, 2), "block-reverse", n8).cpus, (res::Cpus{{4, 5, 6, 7}, {0, 1, 2, 3}}));
  // Only the CPUs the pool may use count, in their order.
  res::NodeResources odd;
  odd.cpus = {2, 3, 6, 7, 9};
  odd.cpu_count = 5;
  EXPECT_EQ(res::plan(res::exactly(2), "block", odd).cpus, (res::Cpus{{2, 3}, {6, 7}}));
  EXPECT_EQ(res::plan(res::exactly(2), "alternating", odd).cpus, (res::Cpus{{2, 6, 9}, {3, 7}}));
  // More workers than CPUs: CPUs are shared, with a warning.
  auto over = res::plan(res::exactly(5), "block", res::node(2));
  EXPECT_EQ(over.cpus, (res::Cpus{{0}, {1}, {0}, {1}, {0}}));
  ASSERT_EQ(over.warnings.size(), 1u);
  EXPECT_NE(over.warnings[0].find("share CPUs"), std::string::npos);
  EXPECT_EQ(res::plan(res::exactly(3), "alternating", res::node(2)).cpus, (res::Cpus{{0}, {1}, {0}}));
  EXPECT_EQ(res::plan(res::exactly(3), "block-reverse", res::node(2)).cpus, (res::Cpus{{0}, {1}, {0}}));
}

TEST(PoolResources, ListAffinity) {
  const auto n8 = res::node(8);
  auto p = res::plan(res::exactly(2), "list:0,1:2-3,7", n8);
  EXPECT_TRUE(p.error.empty()) << p.error;
  EXPECT_EQ(p.cpus, (res::Cpus{{0, 1}, {2, 3, 7}}));
  auto extra = res::plan(res::exactly(1), "list:4:5", n8);
  EXPECT_TRUE(extra.error.empty()) << extra.error;
  EXPECT_EQ(extra.cpus, (res::Cpus{{4}}));
  EXPECT_EQ(extra.warnings.size(), 1u) << "unused entries are mentioned";
  auto few = res::plan(res::cores(2), "list:0,1:2,3", n8);
  EXPECT_NE(few.error.find("list has 2 entries but the pool starts 4 workers"), std::string::npos) << few.error;
  auto foreign = res::plan(res::exactly(1), "list:8", n8);
  EXPECT_NE(foreign.error.find("CPU 8"), std::string::npos) << foreign.error;
}

TEST(PoolResources, FormatsCpuListsLikeTheKernel) {
  EXPECT_EQ(pervade::pool::format_cpu_list({}), "");
  EXPECT_EQ(pervade::pool::format_cpu_list({3}), "3");
  EXPECT_EQ(pervade::pool::format_cpu_list({0, 1, 2, 3, 8, 10, 11}), "0-3,8,10-11");
}

// ------------------------------------------------------------------------ resources (the binary)
double mem_available_gib() {
  std::ifstream in("/proc/meminfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("MemAvailable:", 0) == 0) return std::stod(line.substr(13)) / (1024.0 * 1024.0);
  return -1;
}

// Runs the pool with `extra` arguments and environment against its own fake interchange, answers
// REGISTER and shuts the pool down. Returns the registered worker count (-1: no REGISTER) and
// the pool's log.
std::pair<int, std::string> registered_worker_count(const fs::path& dir, std::vector<std::string> extra,
                                                    std::vector<std::string> env = {}) {
  static int run = 0;
  FakeInterchange ix;
  PoolProcess pool;
  const fs::path log = dir / ("count-" + std::to_string(run++) + ".log");
  std::vector<std::string> a{"--address", ix.address(), "--log", log.string(), "--no-python"};
  a.insert(a.end(), extra.begin(), extra.end());
  pool.start(a, dir, env);
  int count = -1;
  if (auto reg = ix.expect<proto::Register>(kDeadline)) {
    count = reg->worker_count;
    proto::Registered ok;
    ok.heartbeat_period = 30;
    ok.heartbeat_threshold = 60;
    ix.send(proto::InterchangeMessage{ok});
    ix.send(proto::InterchangeMessage{proto::Shutdown{}});
    EXPECT_EQ(pool.wait_exit(kDeadline), 0);
  }
  return {count, read_file(log)};
}

TEST_F(ProcessPoolTest, WorkerCountFollowsCoresMemoryAndMaxWorkers) {
  const int n = cpu_count();
  const auto count = [&](std::vector<std::string> extra, std::vector<std::string> env = {}) {
    auto [c, log] = registered_worker_count(dir_, std::move(extra), std::move(env));
    EXPECT_NE(log.find(std::to_string(c) + " worker"), std::string::npos) << "the log says how: " << log;
    return c;
  };
  EXPECT_EQ(count({"--cores-per-worker", "1"}), n);
  EXPECT_EQ(count({"--cores-per-worker", "0.5"}), 2 * n);
  EXPECT_EQ(count({"--cores-per-worker", std::to_string(n)}), 1);
  EXPECT_EQ(count({"--cores-per-worker", std::to_string(n + 1)}), 1) << "at least one worker";
  EXPECT_EQ(count({"--cores-per-worker", "0.25", "--max-workers", "3"}), 3);
  EXPECT_EQ(count({"--max-workers", std::to_string(n + 5)}), n);
  // Memory: per-worker memory of 1/2.5 of what is available -> 2 workers (whatever else runs
  // on this machine, MemAvailable would have to change by 20% between the two reads to
  // matter); CPUs allow 16 per CPU.
  const double mem = mem_available_gib();
  ASSERT_GT(mem, 0.1) << "no MemAvailable in /proc/meminfo";
  EXPECT_EQ(count({"--cores-per-worker", "0.0625", "--mem-per-worker", std::to_string(mem / 2.5)}), 2);
  EXPECT_EQ(count({"--cores-per-worker", "0.0625", "--mem-per-worker", "0"}), 16 * n) << "0: memory not considered";
  // Parsl's PARSL_CORES and PARSL_MEMORY_GB replace what the node says.
  auto [c, log] = registered_worker_count(dir_, {"--cores-per-worker", "2", "--mem-per-worker", "3"},
                                          {"PARSL_CORES=8", "PARSL_MEMORY_GB=10"});
  EXPECT_EQ(c, 3);
  EXPECT_NE(log.find("3 workers: 8 CPUs / 2 cores per worker = 4; 10.0 GB available / 3 GB per worker = 3"),
            std::string::npos)
      << log;
  EXPECT_EQ(count({"--max-workers", "5", "--available-accelerators", "a,b"}), std::min(2, n));
}

// Runs a shell command line (through sh, stderr merged into stdout); returns (status, output).
std::pair<int, std::string> run_pool_capture(const std::vector<std::string>& args, const std::string& env = "") {
  std::string cmd = env + " '" PERVADE_POOL_BINARY "'";
  for (const auto& a : args) cmd += " '" + a + "'";
  return run_capture({"/bin/sh", "-c", cmd + " 2>&1"});
}

TEST_F(ProcessPoolTest, BadResourceOptionsAreUsageErrors) {
  const std::vector<std::string> base{"--address", "127.0.0.1:5", "--no-python"};
  const auto usage = [&](std::vector<std::string> extra, const std::string& expected_text, const std::string& env = "") {
    std::vector<std::string> a = base;
    a.insert(a.end(), extra.begin(), extra.end());
    auto [status, out] = run_pool_capture(a, env);
    EXPECT_EQ(status, 2) << out;
    EXPECT_NE(out.find(expected_text), std::string::npos) << "expected '" << expected_text << "' in: " << out;
  };
  usage({"--cores-per-worker", "0"}, "--cores-per-worker must be a number > 0");
  usage({"--cores-per-worker", "-1"}, "--cores-per-worker must be a number > 0");
  usage({"--cores-per-worker", "two"}, "--cores-per-worker must be a number > 0");
  usage({"--mem-per-worker", "-1"}, "--mem-per-worker must be");
  usage({"--max-workers", "0"}, "--max-workers must be an integer >= 1");
  usage({"--max-workers", "1.5"}, "--max-workers must be an integer >= 1");
  usage({"--workers", "2", "--max-workers", "3"}, "cannot be combined");
  usage({"--cpu-affinity", "weird"}, "expected none, block, block-reverse, alternating or list");
  usage({"--cpu-affinity", "list:0,x"}, "'x' is not a CPU number");
  usage({"--cpu-affinity", "list:"}, "worker 0's entry");
  // Known only on the node: fewer CPU lists than workers, CPUs the pool may not use, bad
  // overrides. The pool logs the reason and exits with 2 before connecting.
  usage({"--workers", "2", "--cpu-affinity", "list:0"}, "list has 1 entry but the pool starts 2 workers");
  usage({"--workers", "1", "--cpu-affinity", "list:1023"}, "CPU 1023 (worker 0) is not one the pool may use");
  usage({"--cores-per-worker", "1"}, "PARSL_CORES='many' is not an integer", "PARSL_CORES=many");
  usage({"--cores-per-worker", "1"}, "PARSL_MEMORY_GB='-3' is not a number", "PARSL_MEMORY_GB=-3");
  // MPI mode (docs/mpi.md): the launcher, the host list, and a block whose nodes nothing names.
  usage({"--mpi-launcher", "mpirun"}, "--mpi-launcher must be mpiexec, srun or aprun, got 'mpirun'");
  usage({"--mpi-launcher", "srun", "--mpi-hosts", "a:2,b"}, "a core count for all hosts or none");
  usage({"--mpi-hosts", "a,b"}, "--mpi-hosts needs --mpi-launcher");
  usage({"--mpi-launcher", "mpiexec"}, "MPI mode needs the block's nodes", "SLURM_NODELIST= SLURM_JOB_NODELIST= PBS_NODEFILE=");
  usage({"--mpi-launcher", "mpiexec"}, "cannot read PBS_NODEFILE '/nonexistent'", "PBS_NODEFILE=/nonexistent");
}

TEST_F(ProcessPoolTest, PythonVersionOptionIsRegisteredAndRefusedExitsWith3) {
  // Python mode with an explicit version: the interpreter is not asked (and workers are only
  // started after REGISTERED, so /bin/false is never run).
  pool_.start(args({"--python", "/bin/false", "--python-version", "3.11.7"}), dir_);
  auto reg = ix_.expect<proto::Register>(kDeadline);
  ASSERT_TRUE(reg);
  EXPECT_EQ(reg->python_version, "3.11.7");
  ix_.send(proto::InterchangeMessage{proto::Refused{"Python 3.11 here, 3.12 in the driver"}});
  EXPECT_EQ(pool_.wait_exit(kDeadline), 3);
  EXPECT_NE(log_text().find("Python 3.11 here, 3.12 in the driver"), std::string::npos) << log_text();
  expect_no_live_descendants();
}

TEST_F(ProcessPoolTest, NoAnswerToRegisterExitsWith4) {
  pool_.start(args({"--no-python", "--heartbeat-threshold", "1"}), dir_);
  ASSERT_TRUE(ix_.expect<proto::Register>(kDeadline));
  EXPECT_EQ(pool_.wait_exit(kDeadline), 4);
  EXPECT_NE(log_text().find("no answer"), std::string::npos) << log_text();
}

TEST_F(ProcessPoolTest, ConnectsByHostName) {
  const std::string port = ix_.address().substr(ix_.address().rfind(':') + 1);
  pool_.start({"--address", "tcp://localhost:" + port, "--log", log_.string(), "--no-python", "--workers", "1"}, dir_);
  ASSERT_TRUE(ix_.expect<proto::Register>(kDeadline));
  ix_.send(proto::InterchangeMessage{proto::Shutdown{}});  // before REGISTERED: ignored
  ix_.send(proto::InterchangeMessage{proto::Registered{}});
  ix_.send(proto::InterchangeMessage{proto::Shutdown{}});
  EXPECT_EQ(pool_.wait_exit(kDeadline), 0);
}

TEST_F(ProcessPoolTest, ConnectsOverIPv6) {
  std::unique_ptr<FakeInterchange> ix6;
  try {
    ix6 = std::make_unique<FakeInterchange>(true);
  } catch (const zmq::error_t& e) {
    GTEST_SKIP() << "no IPv6 loopback here: " << e.what();
  }
  pool_.start({"--address", ix6->address(), "--log", log_.string(), "--no-python", "--workers", "1"}, dir_);
  auto reg = ix6->expect<proto::Register>(kDeadline);
  ASSERT_TRUE(reg) << "address " << ix6->address();
  ix6->send(proto::InterchangeMessage{proto::Registered{}});
  ix6->send(proto::InterchangeMessage{tasks_of({shell_task(1, "exit 5")})});
  auto got = ix6->results(1, kDeadline);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(exit_code_of(got[1]), 5);
  ix6->send(proto::InterchangeMessage{proto::Shutdown{}});
  EXPECT_EQ(pool_.wait_exit(kDeadline), 0);
}

TEST_F(ProcessPoolTest, ConnectsWithCurveZMQ) {
  if (!zmq_has("curve")) GTEST_SKIP() << "this libzmq has no CURVE support";
  char server_public[41], server_secret[41], client_public[41], client_secret[41];
  ASSERT_EQ(zmq_curve_keypair(server_public, server_secret), 0);
  ASSERT_EQ(zmq_curve_keypair(client_public, client_secret), 0);
  FakeInterchange secure(false, server_secret);
  const fs::path server_key = dir_ / "server.key";
  const fs::path client_keys = dir_ / "client.keys";
  std::ofstream(server_key) << server_public << "\n";
  std::ofstream(client_keys) << client_public << "\n" << client_secret << "\n";
  pool_.start({"--address", secure.address(), "--log", log_.string(), "--no-python", "--workers", "1",
               "--curve-server-key", server_key.string(), "--curve-client-keys", client_keys.string()},
              dir_);
  ASSERT_TRUE(secure.expect<proto::Register>(kDeadline));
  secure.send(proto::InterchangeMessage{proto::Registered{}});
  secure.send(proto::InterchangeMessage{tasks_of({shell_task(1, "exit 2")})});
  auto got = secure.results(1, kDeadline);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(exit_code_of(got[1]), 2);
  secure.send(proto::InterchangeMessage{proto::Shutdown{}});
  EXPECT_EQ(pool_.wait_exit(kDeadline), 0);
}

// --ipc that this pool cannot use: it connects to --address (with CurveZMQ) instead, at once.
// A socket file whose listener is gone stands for one seen through a shared filesystem from
// another host (the file exists, connecting is refused; ZeroMQ would retry it forever).
TEST_F(ProcessPoolTest, UnusableSameHostSocketFallsBackToTcp) {
  if (!zmq_has("curve")) GTEST_SKIP() << "this libzmq has no CURVE support";
  char server_public[41], server_secret[41];
  ASSERT_EQ(zmq_curve_keypair(server_public, server_secret), 0);
  const fs::path server_key = dir_ / "server.key";
  std::ofstream(server_key) << server_public << "\n";
  const fs::path stale = dir_ / "stale.sock";
  {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, stale.c_str(), sizeof addr.sun_path - 1);
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ASSERT_EQ(::listen(fd, 1), 0);
    ::close(fd);  // the file stays; nobody listens any more
  }
  ASSERT_TRUE(fs::exists(stale));
  const std::string here = pervade::detail::same_host_id();
  ASSERT_FALSE(here.empty());
  const std::vector<std::pair<std::string, std::string>> cases{
      {"ipc://" + stale.string(), here},                      // stale socket on this host
      {"ipc://" + (dir_ / "missing.sock").string(), here},    // no such file
      {"ipc://" + stale.string(), "another-boot-id/net:1"},   // another host
  };
  for (const auto& [ipc, host_id] : cases) {
    SCOPED_TRACE(ipc + " " + host_id);
    FakeInterchange secure(false, server_secret);
    fs::remove(log_);
    pool_.start({"--address", secure.address(), "--log", log_.string(), "--no-python", "--workers", "1",
                 "--curve-server-key", server_key.string(), "--ipc", ipc, "--host-id", host_id},
                dir_);
    ASSERT_TRUE(secure.expect<proto::Register>(kDeadline)) << "no REGISTER over TCP + CurveZMQ";
    secure.send(proto::InterchangeMessage{proto::Registered{}});
    secure.send(proto::InterchangeMessage{tasks_of({shell_task(1, "exit 4")})});
    auto got = secure.results(1, kDeadline);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(exit_code_of(got[1]), 4);
    const std::string log = log_text();
    EXPECT_NE(log.find("not using the same-host socket " + ipc), std::string::npos) << log;
    EXPECT_NE(log.find(", CurveZMQ"), std::string::npos) << log;
    secure.send(proto::InterchangeMessage{proto::Shutdown{}});
    EXPECT_EQ(pool_.wait_exit(kDeadline), 0);
  }
}

// --ipc that works: the pool connects there, without CurveZMQ (the interchange's Unix socket
// is a plain ROUTER), even though --address points nowhere.
TEST_F(ProcessPoolTest, UsesTheSameHostSocketWhenItCan) {
  zmq::context_t ctx;
  zmq::socket_t router(ctx, zmq::socket_type::router);
  router.set(zmq::sockopt::linger, 0);
  const std::string ipc = "ipc://" + (dir_ / "ix.sock").string();
  router.bind(ipc);
  pool_.start({"--address", "127.0.0.1:9", "--log", log_.string(), "--no-python", "--workers", "1",
               "--curve-server-key", (dir_ / "no-such.key").string(), "--ipc", ipc, "--host-id",
               pervade::detail::same_host_id(), "--heartbeat-threshold", "5"},
              dir_);
  zmq::pollitem_t item{router.handle(), 0, ZMQ_POLLIN, 0};
  zmq::poll(&item, 1, std::chrono::duration_cast<std::chrono::milliseconds>(kDeadline));
  ASSERT_TRUE(item.revents & ZMQ_POLLIN) << log_text();
  std::vector<zmq::message_t> frames;
  ASSERT_TRUE(zmq::recv_multipart(router, std::back_inserter(frames)));
  ASSERT_EQ(frames.size(), 2u);
  auto m = proto::decode_pool_message(static_cast<const char*>(frames[1].data()), frames[1].size());
  ASSERT_TRUE(m && std::holds_alternative<proto::Register>(*m));
  EXPECT_NE(log_text().find("interchange " + ipc + " (same host, Unix socket)"), std::string::npos) << log_text();
  for (const proto::InterchangeMessage& reply : {proto::InterchangeMessage{proto::Registered{}},
                                                 proto::InterchangeMessage{proto::Shutdown{}}}) {
    router.send(zmq::buffer(frames[0].to_string()), zmq::send_flags::sndmore);
    router.send(zmq::buffer(proto::encode(reply)), zmq::send_flags::none);
  }
  EXPECT_EQ(pool_.wait_exit(kDeadline), 0);
}

TEST_F(ProcessPoolTest, WrongCurveServerKeyNeverRegisters) {
  if (!zmq_has("curve")) GTEST_SKIP() << "this libzmq has no CURVE support";
  char server_public[41], server_secret[41], other_public[41], other_secret[41];
  ASSERT_EQ(zmq_curve_keypair(server_public, server_secret), 0);
  ASSERT_EQ(zmq_curve_keypair(other_public, other_secret), 0);
  FakeInterchange secure(false, server_secret);
  const fs::path server_key = dir_ / "server.key";
  std::ofstream(server_key) << other_public << "\n";  // not the server's key
  // No client key file: the pool makes itself a fresh key pair.
  pool_.start({"--address", secure.address(), "--log", log_.string(), "--no-python", "--workers", "1",
               "--heartbeat-threshold", "1", "--curve-server-key", server_key.string()},
              dir_);
  EXPECT_EQ(pool_.wait_exit(kDeadline), 4);
  EXPECT_FALSE(secure.recv(0s)) << "a message got through with the wrong server key";
}

// ------------------------------------------------------------------------ shell tasks
TEST_F(ProcessPoolTest, ShellTasksRunAndReturnTheirExitCodes) {
  ASSERT_TRUE(start_registered({"--no-python", "--workers", "2", "--prefetch", "4"}));
  const std::string out = (dir_ / "out.txt").string();
  const std::string err = (dir_ / "err.txt").string();
  ix_.send(proto::InterchangeMessage{tasks_of({
      shell_task(1, "exit 0"),
      shell_task(2, "exit 7"),
      shell_task(3, "echo hello; echo oops >&2", 0, out, err),
      shell_task(4, "true", 0, "/proc/no/such/dir/out.txt"),
  })});
  proto::Task malformed;
  malformed.task_id = 5;
  malformed.kind = proto::kKindShell;
  malformed.payload = "not msgpack at all";
  ix_.send(proto::InterchangeMessage{tasks_of({malformed})});

  auto got = ix_.results(5, kDeadline);
  ASSERT_EQ(got.size(), 5u);
  EXPECT_EQ(got[1].status, proto::kStatusOk);
  EXPECT_EQ(exit_code_of(got[1]), 0);
  EXPECT_EQ(got[2].status, proto::kStatusOk);
  EXPECT_EQ(exit_code_of(got[2]), 7);
  EXPECT_EQ(got[3].status, proto::kStatusOk);
  EXPECT_EQ(exit_code_of(got[3]), 0);
  EXPECT_EQ(read_file(out), "hello\n");
  EXPECT_EQ(read_file(err), "oops\n");
  EXPECT_EQ(got[4].status, proto::kStatusException);
  EXPECT_NE(got[4].payload.find("stdout"), std::string::npos) << got[4].payload;
  EXPECT_EQ(got[5].status, proto::kStatusException);
  EXPECT_FALSE(got[5].payload.empty());
  for (auto& [id, r] : got) EXPECT_TRUE(r.run_time) << "task " << id << " ran on a shell thread: timed";

  ix_.send(proto::InterchangeMessage{proto::Shutdown{}});
  EXPECT_EQ(pool_.wait_exit(kDeadline), 0);
  expect_no_live_descendants();
}

TEST_F(ProcessPoolTest, PythonTasksInANoPythonPoolAreReportedLost) {
  ASSERT_TRUE(start_registered({"--no-python", "--workers", "1"}));
  proto::Task t;
  t.task_id = 9;
  t.kind = proto::kKindPython;
  t.fn_hash = "h";
  t.fn = "f";
  t.payload = "p";
  ix_.send(proto::InterchangeMessage{tasks_of({t})});
  auto got = ix_.results(1, kDeadline);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[9].status, proto::kStatusWorkerLost);
  EXPECT_NE(got[9].payload.find("no Python"), std::string::npos) << got[9].payload;
  EXPECT_FALSE(got[9].run_time) << "refused: it did not run";
}

TEST_F(ProcessPoolTest, ShellWalltimeKillsTheCommand) {
  ASSERT_TRUE(start_registered({"--no-python", "--workers", "1"}));
  const auto start = Clock::now();
  ix_.send(proto::InterchangeMessage{tasks_of({shell_task(1, "sleep 30", 0.3)})});
  auto got = ix_.results(1, kDeadline);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_LT(Clock::now() - start, 10s);
  // Reported as a walltime expiry (the driver leaves walltime to the pool), not as the exit code.
  EXPECT_EQ(got[1].status, proto::kStatusException);
  EXPECT_EQ(std::string(got[1].payload.begin(), got[1].payload.end()),
            std::string(proto::kShellWalltimeExceeded) + "0.3 s");
  ASSERT_TRUE(got[1].run_time);
  EXPECT_GE(*got[1].run_time, 300ms) << "it ran until its walltime";
  ix_.send(proto::InterchangeMessage{proto::Shutdown{}});
  EXPECT_EQ(pool_.wait_exit(kDeadline), 0);
  expect_no_live_descendants();
}

// ------------------------------------------------------------------------ liveness
TEST_F(ProcessPoolTest, HeartbeatsFlowAndInterchangeHeartbeatsKeepThePoolAlive) {
  ASSERT_TRUE(start_registered({"--no-python", "--workers", "1"}, /*period=*/0.1, /*threshold=*/1.0));
  // For 2.5 threshold-lengths, answer with our own heartbeats: the pool must stay and keep
  // sending its heartbeats.
  int heartbeats = 0;
  const auto until = Clock::now() + 2500ms;
  while (Clock::now() < until) {
    auto in = ix_.recv(100ms);
    if (in && in->message && std::holds_alternative<proto::Heartbeat>(*in->message)) ++heartbeats;
    ix_.send(proto::InterchangeMessage{proto::Heartbeat{}});
  }
  EXPECT_GE(heartbeats, 5);
  EXPECT_FALSE(pool_.wait_exit(0s)) << "the pool left although the interchange kept talking";
  // It still works.
  ix_.send(proto::InterchangeMessage{tasks_of({shell_task(1, "exit 3")})});
  auto got = ix_.results(1, kDeadline);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(exit_code_of(got[1]), 3);
  ix_.send(proto::InterchangeMessage{proto::Shutdown{}});
  EXPECT_EQ(pool_.wait_exit(kDeadline), 0);
}

TEST_F(ProcessPoolTest, ExitsWhenTheInterchangeGoesSilentAndLeavesNothingBehind) {
  ASSERT_TRUE(start_registered({"--no-python", "--workers", "2", "--heartbeat-threshold", "1"}, 0.2, 1.0));
  Fifo started(dir_ / "started");
  ix_.send(proto::InterchangeMessage{
      tasks_of({shell_task(1, "echo started > " + started.path().string() + "; sleep 100")})});
  ASSERT_TRUE(started.wait_readable(kDeadline));
  // Silence from now on.
  const auto t0 = Clock::now();
  EXPECT_EQ(pool_.wait_exit(kDeadline), 0);
  EXPECT_LT(Clock::now() - t0, 10s);
  EXPECT_NE(log_text().find("interchange gone"), std::string::npos) << log_text();
  expect_no_live_descendants();
}

TEST_F(ProcessPoolTest, ExitsSoonAfterTheInterchangeConnectionCloses) {
  // A long heartbeat threshold: only the closed connection can make the pool leave quickly.
  ASSERT_TRUE(start_registered({"--no-python", "--workers", "1"}, /*period=*/30, /*threshold=*/120));
  Fifo started(dir_ / "started");
  ix_.send(proto::InterchangeMessage{
      tasks_of({shell_task(1, "echo started > " + started.path().string() + "; sleep 100")})});
  ASSERT_TRUE(started.wait_readable(kDeadline));
  const auto t0 = Clock::now();
  ix_.close();
  EXPECT_EQ(pool_.wait_exit(30s), 0);
  EXPECT_LT(Clock::now() - t0, 20s);
  EXPECT_NE(log_text().find("connection to the interchange closed"), std::string::npos) << log_text();
  expect_no_live_descendants();
}

// ------------------------------------------------------------------------ DRAIN / SHUTDOWN / signals
TEST_F(ProcessPoolTest, DrainFinishesTasksThenSendsDrainedAndExits) {
  ASSERT_TRUE(start_registered({"--no-python", "--workers", "1", "--prefetch", "1"}));
  Fifo started(dir_ / "started");
  ix_.send(proto::InterchangeMessage{tasks_of({
      shell_task(1, "echo started > " + started.path().string() + "; sleep 0.3; exit 3"),
      shell_task(2, "exit 4"),  // queued behind task 1 (one thread)
  })});
  ASSERT_TRUE(started.wait_readable(kDeadline));
  ix_.send(proto::InterchangeMessage{proto::Drain{}});
  ix_.send(proto::InterchangeMessage{tasks_of({shell_task(3, "exit 0")})});  // too late

  std::map<std::uint64_t, proto::TaskResult> got;
  bool drained = false;
  const auto deadline = Clock::now() + kDeadline;
  while (!drained && Clock::now() < deadline) {
    auto in = ix_.recv(deadline - Clock::now());
    if (!in || !in->message) continue;
    if (auto* r = std::get_if<proto::Results>(&*in->message))
      for (auto& one : r->results) got[one.task_id] = one;
    if (std::holds_alternative<proto::Drained>(*in->message)) {
      drained = true;
      EXPECT_EQ(got.size(), 3u) << "DRAINED came before all results";
    }
  }
  EXPECT_TRUE(drained);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(exit_code_of(got[1]), 3);
  EXPECT_EQ(exit_code_of(got[2]), 4);
  EXPECT_EQ(got[3].status, proto::kStatusWorkerLost);
  EXPECT_NE(got[3].payload.find("draining"), std::string::npos) << got[3].payload;
  EXPECT_EQ(pool_.wait_exit(kDeadline), 0);
  expect_no_live_descendants();
}

TEST_F(ProcessPoolTest, CancelStopsRunningAndQueuedShellTasks) {
  ASSERT_TRUE(start_registered({"--no-python", "--workers", "1"}));
  Fifo started(dir_ / "started");
  ix_.send(proto::InterchangeMessage{tasks_of({shell_task(1, "echo started > " + started.path().string() + "; sleep 100"),
                                               shell_task(2, "exit 0")})});
  ASSERT_TRUE(started.wait_readable(kDeadline));
  const auto t0 = Clock::now();
  ix_.send(proto::InterchangeMessage{proto::Cancel{{2, 1}}});
  auto got = ix_.results(2, kDeadline);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[2].status, proto::kStatusCancelled);  // queued behind task 1: never ran
  EXPECT_NE(got[1].status, proto::kStatusCancelled);  // it ran: its (killed) result comes back
  EXPECT_LT(Clock::now() - t0, 10s);
  ix_.send(proto::InterchangeMessage{proto::Shutdown{}});
  EXPECT_EQ(pool_.wait_exit(kDeadline), 0);
  expect_no_live_descendants();
}

TEST_F(ProcessPoolTest, ShutdownKillsRunningCommandsAndExits) {
  ASSERT_TRUE(start_registered({"--no-python", "--workers", "2"}));
  Fifo started(dir_ / "started");
  ix_.send(proto::InterchangeMessage{
      tasks_of({shell_task(1, "echo started > " + started.path().string() + "; sleep 100")})});
  ASSERT_TRUE(started.wait_readable(kDeadline));
  const auto t0 = Clock::now();
  ix_.send(proto::InterchangeMessage{proto::Shutdown{}});
  EXPECT_EQ(pool_.wait_exit(kDeadline), 0);
  EXPECT_LT(Clock::now() - t0, 10s);
  expect_no_live_descendants();
}

TEST_F(ProcessPoolTest, SigtermKillsRunningCommandsAndExits) {
  ASSERT_TRUE(start_registered({"--no-python", "--workers", "2"}));
  Fifo started(dir_ / "started");
  ix_.send(proto::InterchangeMessage{
      tasks_of({shell_task(1, "echo started > " + started.path().string() + "; sleep 100")})});
  ASSERT_TRUE(started.wait_readable(kDeadline));
  pool_.signal(SIGTERM);
  EXPECT_EQ(pool_.wait_exit(kDeadline), 128 + SIGTERM);
  expect_no_live_descendants();
}

// ------------------------------------------------------------------------ robustness
TEST_F(ProcessPoolTest, GarbageFromTheInterchangeIsIgnored) {
  ASSERT_TRUE(start_registered({"--no-python", "--workers", "1"}));
  std::mt19937 rng(12345);
  for (int i = 0; i < 200; ++i) {
    std::string junk(rng() % 300, '\0');
    for (char& c : junk) c = static_cast<char>(rng());
    ix_.send_raw(junk);
  }
  ix_.send_raw("");                                   // empty frame
  ix_.send_raw(std::string("\x91\xcd\x03\xe7", 4));   // [999]: unknown type
  ix_.send_raw(std::string("\x92\x67\xa3xyz", 6));    // [103, "xyz"]: TASKS with a bad field
  ix_.send_raw(std::string("\x93\x65\xc0\xc0", 4));   // [101, nil, nil]: REGISTERED, bad fields
  ix_.send_frames({proto::encode(proto::InterchangeMessage{proto::Shutdown{}}), "second frame"});  // multi-frame
  ix_.send(proto::InterchangeMessage{tasks_of({shell_task(1, "exit 6")})});
  auto got = ix_.results(1, kDeadline);
  ASSERT_EQ(got.size(), 1u) << "the pool stopped working after garbage";
  EXPECT_EQ(exit_code_of(got[1]), 6);
  EXPECT_TRUE(pool_.running());
  EXPECT_NE(log_text().find("malformed"), std::string::npos);
  ix_.send(proto::InterchangeMessage{proto::Shutdown{}});
  EXPECT_EQ(pool_.wait_exit(kDeadline), 0);
}

TEST_F(ProcessPoolTest, WorkersThatCannotStartMakeThePoolReportFailedAndExitWith5) {
  // /bin/false "is" the interpreter: every worker exits at once without READY.
  ASSERT_TRUE(start_registered({"--python", "/bin/false", "--python-version", "3.11.7", "--workers", "2"}));
  auto failed = ix_.expect<proto::Failed>(kDeadline);
  ASSERT_TRUE(failed) << log_text();
  EXPECT_NE(failed->reason.find("interpreter '/bin/false'"), std::string::npos) << failed->reason;
  EXPECT_NE(failed->reason.find("exited with status 1"), std::string::npos) << failed->reason;
  EXPECT_EQ(pool_.wait_exit(kDeadline), 5);
  EXPECT_NE(log_text().find("cannot start"), std::string::npos) << log_text();
  expect_no_live_descendants();
}

TEST_F(ProcessPoolTest, AnInterpreterThatDoesNotExistIsNamedInFailed) {
  const std::string missing = (dir_ / "no-such-python").string();
  ASSERT_TRUE(start_registered({"--python", missing, "--python-version", "3.11.7", "--workers", "1"}));
  auto failed = ix_.expect<proto::Failed>(kDeadline);
  ASSERT_TRUE(failed) << log_text();
  EXPECT_NE(failed->reason.find("'" + missing + "'"), std::string::npos) << failed->reason;
  EXPECT_NE(failed->reason.find("No such file or directory"), std::string::npos) << failed->reason;
  EXPECT_EQ(pool_.wait_exit(kDeadline), 5);
}

TEST_F(ProcessPoolTest, FailedQuotesWhatTheInterpreterPrintsOnImportingTheWorker) {
  // An interpreter without pervade: it says so on stderr and exits 1, for workers and probe alike.
  const fs::path python = dir_ / "python-without-pervade";
  std::ofstream(python) << "#!/bin/sh\necho \"ModuleNotFoundError: No module named 'pervade'\" >&2\nexit 1\n";
  fs::permissions(python, fs::perms::owner_all);
  ASSERT_TRUE(start_registered({"--python", python.string(), "--python-version", "3.11.7", "--workers", "1"}));
  auto failed = ix_.expect<proto::Failed>(kDeadline);
  ASSERT_TRUE(failed) << log_text();
  EXPECT_NE(failed->reason.find("interpreter '" + python.string() + "'"), std::string::npos) << failed->reason;
  EXPECT_NE(failed->reason.find("No module named 'pervade'"), std::string::npos) << failed->reason;
  EXPECT_EQ(pool_.wait_exit(kDeadline), 5);
  expect_no_live_descendants();
}

// A stand-in for `python -m pervade.worker` (no Python needed): a bash script that sends READY
// on fd 3, runs `prelude`, waits for the first byte of a TASK and then does `behaviour`.
fs::path fake_worker(const fs::path& dir, const std::string& behaviour, const std::string& prelude = "") {
  const fs::path path = dir / "fake-python";
  std::ofstream out(path);
  out << "#!/bin/bash\n"
         "# argv: -m pervade.worker --fd 3 --rank R --pool-id ID --block-id ID\n"
         "printf \"\\x04\\x00\\x00\\x00\\x93\\x02\\x$(printf %02x \"$6\")\\x00\" >&3   # READY [2, rank, 0]\n"
      << prelude << "\n"
      << "IFS= read -r -N 1 _ <&3\n"
      << behaviour << "\n";
  out.close();
  fs::permissions(path, fs::perms::owner_all);
  return path;
}

proto::Task opaque_python_task(std::uint64_t id, bool with_fn) {
  proto::Task t;
  t.task_id = id;
  t.kind = proto::kKindPython;
  t.fn_hash = "hash-1";
  if (with_fn) t.fn = "fn-bytes";
  t.payload = "payload";
  return t;
}

TEST_F(ProcessPoolTest, WorkerSendingAMalformedFrameIsKilledAndReplaced) {
  const fs::path fake = fake_worker(dir_, "printf '\\x02\\x00\\x00\\x00\\xc1\\xc1' >&3; exec sleep 100");
  ASSERT_TRUE(start_registered({"--python", fake.string(), "--python-version", "3.11.7", "--workers", "1"}));
  ix_.send(proto::InterchangeMessage{tasks_of({opaque_python_task(1, true)})});
  auto got = ix_.results(1, kDeadline);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[1].status, proto::kStatusWorkerLost);
  EXPECT_NE(got[1].payload.find("malformed"), std::string::npos) << got[1].payload;
  EXPECT_NE(got[1].payload.find("task 1"), std::string::npos) << got[1].payload;
  // The replacement (same rank) takes the next task; the pool gives it the function again.
  ix_.send(proto::InterchangeMessage{tasks_of({opaque_python_task(2, false)})});
  auto next = ix_.results(1, kDeadline);
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[2].status, proto::kStatusWorkerLost);
  EXPECT_NE(next[2].payload.find("malformed"), std::string::npos) << next[2].payload;
  ix_.send(proto::InterchangeMessage{proto::Shutdown{}});
  EXPECT_EQ(pool_.wait_exit(kDeadline), 0);
  expect_no_live_descendants();
}

TEST_F(ProcessPoolTest, WorkerThatClosesItsSocketButStaysIsKilled) {
  const fs::path fake = fake_worker(dir_, "exec 3>&-; exec sleep 100");
  ASSERT_TRUE(start_registered({"--python", fake.string(), "--python-version", "3.11.7", "--workers", "1"}));
  ix_.send(proto::InterchangeMessage{tasks_of({opaque_python_task(7, true)})});
  auto got = ix_.results(1, kDeadline);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[7].status, proto::kStatusWorkerLost);
  EXPECT_NE(got[7].payload.find("did not exit"), std::string::npos) << got[7].payload;
  EXPECT_NE(got[7].payload.find("signal 9"), std::string::npos) << got[7].payload;
  ix_.send(proto::InterchangeMessage{proto::Shutdown{}});
  EXPECT_EQ(pool_.wait_exit(kDeadline), 0);
  expect_no_live_descendants();
}

TEST_F(ProcessPoolTest, WorkersAreStoppedOnSigtermEvenIfTheyIgnoreIt) {
  // A worker that ignores SIGTERM is SIGKILLed after the grace period; nothing survives.
  Fifo up(dir_ / "up");
  const fs::path fake = fake_worker(dir_, "sleep 100 & wait; wait", "trap '' TERM; echo up > " + up.path().string());
  ASSERT_TRUE(start_registered({"--python", fake.string(), "--python-version", "3.11.7", "--workers", "2"}));
  ix_.send(proto::InterchangeMessage{tasks_of({opaque_python_task(1, true)})});
  ASSERT_TRUE(up.wait_lines(2, kDeadline)) << "the fake workers did not start";
  const auto t0 = Clock::now();
  pool_.signal(SIGTERM);
  EXPECT_EQ(pool_.wait_exit(kDeadline), 128 + SIGTERM);
  EXPECT_GE(Clock::now() - t0, 1500ms) << "SIGKILL should come after a grace period";
  expect_no_live_descendants();
}

TEST_F(ProcessPoolTest, WorkersGetTheirEnvironmentAcceleratorsAndCpus) {
  Fifo up(dir_ / "up");
  const std::string report =
      "echo \"$6 $PERVADE_WORKER_RANK $PERVADE_WORKER_COUNT $PERVADE_POOL_ID $PERVADE_BLOCK_ID $PARSL_WORKER_RANK "
      "$PARSL_WORKER_COUNT $PARSL_WORKER_POOL_ID $PARSL_WORKER_BLOCK_ID $CUDA_VISIBLE_DEVICES "
      "$(grep Cpus_allowed_list /proc/$$/status | cut -f2)\" > " +
      up.path().string();
  const fs::path fake = fake_worker(dir_, "exec sleep 100", report);
  auto reg = start_registered({"--python", fake.string(), "--python-version", "3.11.7", "--workers", "2",
                               "--pool-id", "envpool", "--block-id", "b9", "--available-accelerators", "g0,g1,g2",
                               "--cpu-affinity", "block"});
  ASSERT_TRUE(reg);
  EXPECT_EQ(reg->worker_count, 2);
  ASSERT_TRUE(up.wait_lines(2, kDeadline));
  std::vector<std::string> got = lines(up.data());
  std::sort(got.begin(), got.end());
  ASSERT_EQ(got.size(), 2u);
  std::vector<std::string> cpus;
  for (int rank = 0; rank < 2; ++rank) {
    const std::string r = std::to_string(rank);
    const std::string expected = r + " " + r + " 2 envpool b9 " + r + " 2 envpool b9 g" + r + " ";
    ASSERT_EQ(got[rank].substr(0, expected.size()), expected) << got[rank];
    cpus.push_back(got[rank].substr(expected.size()));
  }
  if (cpu_count() >= 2) {
    EXPECT_NE(cpus[0], cpus[1]) << "--cpu-affinity block gives workers distinct CPUs";
  }
  ix_.send(proto::InterchangeMessage{proto::Shutdown{}});
  EXPECT_EQ(pool_.wait_exit(kDeadline), 0);
  expect_no_live_descendants();
}

// Starts a pool of fake workers (see fake_worker) with `extra` arguments and environment against
// its own fake interchange; returns what each worker saw, by rank: "<Cpus_allowed_list>
// <OMP_NUM_THREADS> <GOMP_CPU_AFFINITY> <KMP_AFFINITY>" ("-" for unset variables). Empty if
// the workers did not all report.
std::vector<std::string> fake_worker_reports(const fs::path& dir, int workers, std::vector<std::string> extra,
                                             std::vector<std::string> env = {}) {
  static int run = 0;
  const std::string tag = std::to_string(run++);
  Fifo up(dir / ("up-" + tag));
  const std::string report =
      "echo \"$6 $(grep Cpus_allowed_list /proc/$$/status | cut -f2) ${OMP_NUM_THREADS:--} ${GOMP_CPU_AFFINITY:--} "
      "${KMP_AFFINITY:--}\" > " + up.path().string();
  const fs::path fake = fake_worker(dir, "exec sleep 100", report);
  FakeInterchange ix;
  PoolProcess pool;
  const fs::path log = dir / ("affinity-" + tag + ".log");
  std::vector<std::string> a{"--address", ix.address(), "--log", log.string(), "--python", fake.string(),
                             "--python-version", "3.11.7"};
  a.insert(a.end(), extra.begin(), extra.end());
  pool.start(a, dir, env);
  auto reg = ix.expect<proto::Register>(kDeadline);
  if (!reg) {
    ADD_FAILURE() << "no REGISTER; log:\n" << read_file(log);
    return {};
  }
  EXPECT_EQ(reg->worker_count, workers);
  proto::Registered ok;
  ok.heartbeat_period = 30;
  ok.heartbeat_threshold = 60;
  ix.send(proto::InterchangeMessage{ok});
  std::vector<std::string> by_rank(static_cast<std::size_t>(workers));
  if (!up.wait_lines(workers, kDeadline)) {
    ADD_FAILURE() << "the fake workers did not all report: '" << up.data() << "'; log:\n" << read_file(log);
    return {};
  }
  for (const std::string& line : lines(up.data())) {
    const auto space = line.find(' ');
    const int rank = std::stoi(line.substr(0, space));
    if (rank >= 0 && rank < workers) by_rank[static_cast<std::size_t>(rank)] = line.substr(space + 1);
  }
  ix.send(proto::InterchangeMessage{proto::Shutdown{}});
  EXPECT_EQ(pool.wait_exit(kDeadline), 0);
  return by_rank;
}

std::vector<int> test_cpus() {
  std::vector<int> cpus;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0)
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &set)) cpus.push_back(c);
  return cpus;
}

// What a worker pinned to `cpus` should report.
std::string pinned_report(const std::vector<int>& cpus) {
  std::string commas;
  for (int c : cpus) commas += (commas.empty() ? "" : ",") + std::to_string(c);
  return pervade::pool::format_cpu_list(cpus) + " " + std::to_string(cpus.size()) + " " + commas +
         " explicit,proclist=[" + commas + "]";
}

TEST_F(ProcessPoolTest, EachAffinityModePinsTheWorkers) {
  const std::vector<int> cpus = test_cpus();
  const int n = static_cast<int>(cpus.size());
  ASSERT_GE(n, 1);
  const auto expect_cpus = [&](int workers, std::vector<std::string> extra, std::vector<std::vector<int>> expected) {
    const auto got = fake_worker_reports(dir_, workers, extra);
    ASSERT_EQ(got.size(), expected.size());
    for (std::size_t r = 0; r < expected.size(); ++r)
      EXPECT_EQ(got[r], pinned_report(expected[r])) << "worker " << r << " with " << ::testing::PrintToString(extra);
  };
  // One worker per CPU.
  std::vector<std::vector<int>> one_each, one_each_reversed;
  for (int i = 0; i < n; ++i) {
    one_each.push_back({cpus[static_cast<std::size_t>(i)]});
    one_each_reversed.push_back({cpus[static_cast<std::size_t>(n - 1 - i)]});
  }
  const std::string w = std::to_string(n);
  expect_cpus(n, {"--workers", w, "--cpu-affinity", "block"}, one_each);
  expect_cpus(n, {"--workers", w, "--cpu-affinity", "block-reverse"}, one_each_reversed);
  expect_cpus(n, {"--workers", w, "--cpu-affinity", "alternating"}, one_each);
  // One worker (here chosen by --cores-per-worker): all the CPUs, in every mode.
  for (const char* mode : {"block", "block-reverse", "alternating"})
    expect_cpus(1, {"--cores-per-worker", w, "--cpu-affinity", mode}, {cpus});
  // Two workers: halves, or every other CPU.
  if (n >= 2) {
    const std::size_t half = static_cast<std::size_t>(n / 2);
    std::vector<int> first(cpus.begin(), cpus.begin() + static_cast<long>(half));
    std::vector<int> second(cpus.begin() + static_cast<long>(half), cpus.begin() + static_cast<long>(2 * half));
    std::vector<int> even, odd;
    for (std::size_t i = 0; i < cpus.size(); ++i) (i % 2 ? odd : even).push_back(cpus[i]);
    expect_cpus(2, {"--max-workers", "2", "--cpu-affinity", "block"}, {first, second});
    expect_cpus(2, {"--max-workers", "2", "--cpu-affinity", "block-reverse"}, {second, first});
    expect_cpus(2, {"--max-workers", "2", "--cpu-affinity", "alternating"}, {even, odd});
  }
  // Explicit lists (numbers and ranges); the last CPU alone, then all of them.
  const std::string all = pervade::pool::format_cpu_list(cpus);
  expect_cpus(2, {"--workers", "2", "--cpu-affinity", "list:" + std::to_string(cpus.back()) + ":" + all},
              {{cpus.back()}, cpus});
  // More workers than CPUs: the CPUs are shared.
  expect_cpus(n + 1, {"--workers", std::to_string(n + 1), "--cpu-affinity", "block"},
              [&] {
                auto v = one_each;
                v.push_back({cpus[0]});
                return v;
              }());
}

TEST_F(ProcessPoolTest, PinnedWorkersGetOmpNumThreadsLikeParsl) {
  // Unpinned workers keep the environment's OMP_NUM_THREADS; pinned ones get their CPU count
  // whatever the environment says (Parsl's workers set it unconditionally).
  const auto none = fake_worker_reports(dir_, 1, {"--workers", "1"}, {"OMP_NUM_THREADS=7"});
  ASSERT_EQ(none.size(), 1u);
  EXPECT_EQ(none[0].substr(none[0].find(' ') + 1), "7 - -");
  const std::vector<int> cpus = test_cpus();
  const auto pinned = fake_worker_reports(dir_, 1, {"--workers", "1", "--cpu-affinity", "block"}, {"OMP_NUM_THREADS=7"});
  ASSERT_EQ(pinned.size(), 1u);
  EXPECT_EQ(pinned[0], pinned_report(cpus));
}

TEST_F(ProcessPoolTest, MissingInterpreterMakesThePoolExitWith5) {
  ASSERT_TRUE(start_registered({"--python", (dir_ / "no-such-python").string(), "--python-version", "3.11.7",
                                "--workers", "1"}));
  EXPECT_EQ(pool_.wait_exit(kDeadline), 5);
}

TEST_F(ProcessPoolTest, InterpreterThatCannotTellItsVersionMakesThePoolExitWith5) {
  pool_.start(args({"--python", "/bin/false"}), dir_);
  EXPECT_EQ(pool_.wait_exit(kDeadline), 5);
  EXPECT_NE(log_text().find("Python version"), std::string::npos) << log_text();
}

// ------------------------------------------------------------------------ Python workers
// These tests skip (loudly) when `python3 -c "import pervade.worker"` fails.
#define REQUIRE_PYTHON_WORKER()                                                                           \
  do {                                                                                                    \
    auto [status_, out_] = run_capture({"python3", "-c", "import pervade.worker, pickle, operator, hashlib"}); \
    if (status_ != 0)                                                                                     \
      GTEST_SKIP() << "SKIPPED: `python3 -c \"import pervade.worker\"` failed (status " << status_          \
                   << "): the Python worker is not installed, so the Python-worker path of pervade-pool is " \
                      "NOT tested here";                                                                  \
  } while (0)

struct Fn {
  std::string bytes, hash;
};

// pickle.dumps(module.name) and its SHA-1, computed by python3.
Fn pickled_function(const std::string& module, const std::string& name) {
  auto [status, out] = run_capture(
      {"python3", "-c",
       "import pickle,hashlib,importlib,sys;f=pickle.dumps(getattr(importlib.import_module(sys.argv[1]),"
       "sys.argv[2]));print(f.hex());print(hashlib.sha1(f).hexdigest())",
       module, name});
  auto l = lines(out);
  EXPECT_EQ(status, 0);
  EXPECT_EQ(l.size(), 2u);
  if (status != 0 || l.size() != 2) return {};
  return {from_hex(l[0]), from_hex(l[1])};
}

// pickle.dumps((args, {})) (the payload of docs/protocol.md) where args_expr is a Python expression for a tuple.
std::string pickled_call(const std::string& args_expr) {
  auto [status, out] = run_capture(
      {"python3", "-c", "import pickle,sys;print(pickle.dumps((eval(sys.argv[1]),{})).hex())", args_expr});
  EXPECT_EQ(status, 0);
  auto l = lines(out);
  return l.empty() ? std::string() : from_hex(l[0]);
}

proto::Task python_task(std::uint64_t id, const Fn& fn, bool with_fn, const std::string& payload) {
  proto::Task t;
  t.task_id = id;
  t.kind = proto::kKindPython;
  t.fn_hash = fn.hash;
  if (with_fn) t.fn = fn.bytes;
  t.payload = payload;
  return t;
}

TEST_F(ProcessPoolTest, PythonTasksRunOnWorkers) {
  REQUIRE_PYTHON_WORKER();
  const Fn add = pickled_function("operator", "add");
  const Fn getenv = pickled_function("os", "getenv");
  ASSERT_FALSE(add.bytes.empty());
  ASSERT_TRUE(start_registered({"--python", "python3", "--workers", "2", "--pool-id", "pyp", "--block-id", "3"}));
  // The function travels once per pool; the second add task has no fn and may well go to the
  // other worker, which then gets the bytes from the pool's table.
  ix_.send(proto::InterchangeMessage{tasks_of({
      python_task(1, add, true, pickled_call("(2, 3)")),
      python_task(2, add, false, pickled_call("(40, 2)")),
      python_task(3, getenv, true, pickled_call("('PERVADE_POOL_ID',)")),
      python_task(4, getenv, false, pickled_call("('PARSL_WORKER_BLOCK_ID',)")),
      python_task(5, getenv, false, pickled_call("('PERVADE_WORKER_COUNT',)")),
  })});
  auto got = ix_.results(5, kPythonDeadline);
  ASSERT_EQ(got.size(), 5u);
  for (auto& [id, r] : got) {
    EXPECT_EQ(r.status, proto::kStatusOk) << "task " << id << ": " << r.payload;
    EXPECT_TRUE(r.run_time) << "task " << id << " ran on a worker: timed";
  }
  EXPECT_EQ(python_unpickle_repr(got[1].payload), "5");
  EXPECT_EQ(python_unpickle_repr(got[2].payload), "42");
  EXPECT_EQ(python_unpickle_repr(got[3].payload), "'pyp'");
  EXPECT_EQ(python_unpickle_repr(got[4].payload), "'3'");
  EXPECT_EQ(python_unpickle_repr(got[5].payload), "'2'");

  // A task whose function the pool never received.
  ix_.send(proto::InterchangeMessage{tasks_of({python_task(6, Fn{"", "unknown-hash"}, false, pickled_call("()"))})});
  auto lost = ix_.results(1, kDeadline);
  ASSERT_EQ(lost.size(), 1u);
  EXPECT_EQ(lost[6].status, proto::kStatusWorkerLost);
  EXPECT_FALSE(lost[6].run_time);

  ix_.send(proto::InterchangeMessage{proto::Shutdown{}});
  EXPECT_EQ(pool_.wait_exit(kDeadline), 0);
  expect_no_live_descendants();
}

// Out-of-band buffers arrive as frames after TASKS and reach the worker as the raw bytes after
// its TASK frame; several megabytes, more than a socket takes at once, to two workers.
TEST_F(ProcessPoolTest, OutOfBandBuffersReachTheWorkers) {
  REQUIRE_PYTHON_WORKER();
  const Fn len = pickled_function("builtins", "len");
  ASSERT_FALSE(len.bytes.empty());
  ASSERT_TRUE(start_registered({"--python", "python3", "--workers", "2"}));
  // pickle.dumps(((PickleBuffer(b),), {}), protocol=5, buffer_callback=...): the payload
  // refers to one out-of-band buffer, which the worker passes to pickle.loads(buffers=).
  auto [status, out] = run_capture({"python3", "-c",
                                    "import pickle;bs=[];print(pickle.dumps(((pickle.PickleBuffer(b'x'),),{}),"
                                    "protocol=5,buffer_callback=bs.append).hex())"});
  ASSERT_EQ(status, 0);
  const std::string payload = from_hex(lines(out).at(0));
  std::vector<std::string> frames{""};
  proto::Tasks tasks;
  for (std::uint64_t id = 1; id <= 4; ++id) {
    proto::Task t = python_task(id, len, id == 1, payload);
    auto bytes = std::make_shared<std::string>((std::size_t{5} << 20) + id, static_cast<char>('a' + id));
    t.buffers.push_back({bytes, bytes->data(), bytes->size()});
    frames.push_back(*bytes);
    tasks.tasks.push_back(std::move(t));
  }
  frames[0] = proto::encode(proto::InterchangeMessage{tasks});
  ix_.send_frames(frames);
  auto got = ix_.results(4, kPythonDeadline);
  ASSERT_EQ(got.size(), 4u);
  for (std::uint64_t id = 1; id <= 4; ++id) {
    EXPECT_EQ(got[id].status, proto::kStatusOk) << got[id].payload;
    EXPECT_EQ(python_unpickle_repr(got[id].payload), std::to_string((5 << 20) + id));
  }
  // A TASKS message whose frames do not match its buffers is dropped, and the pool goes on.
  frames.pop_back();
  ix_.send_frames(frames);
  ix_.send(proto::InterchangeMessage{tasks_of({python_task(9, len, false, pickled_call("(b'abc',)"))})});
  auto after = ix_.results(1, kPythonDeadline);
  ASSERT_EQ(after.size(), 1u);
  EXPECT_EQ(python_unpickle_repr(after[9].payload), "3");
  EXPECT_NE(log_text().find("ignoring a malformed message"), std::string::npos);
  ix_.send(proto::InterchangeMessage{proto::Shutdown{}});
  EXPECT_EQ(pool_.wait_exit(kDeadline), 0);
  expect_no_live_descendants();
}

// A big bytes-like result comes back out of band: the worker writes its bytes after the RESULT
// frame, and the pool sends them as a frame after RESULTS.
TEST_F(ProcessPoolTest, BigResultsComeBackAsFramesAfterResults) {
  REQUIRE_PYTHON_WORKER();
  const Fn mul = pickled_function("operator", "mul");
  const Fn make_bytearray = pickled_function("builtins", "bytearray");
  ASSERT_FALSE(mul.bytes.empty());
  ASSERT_FALSE(make_bytearray.bytes.empty());
  ASSERT_TRUE(start_registered({"--python", "python3", "--workers", "2"}));
  // Several at once: two workers, and results that may arrive in one RESULTS message.
  ix_.send(proto::InterchangeMessage{tasks_of({python_task(1, mul, true, pickled_call("(b'ab', 3 << 20)")),
                                               python_task(2, mul, false, pickled_call("(b'cd', 10)")),
                                               python_task(3, make_bytearray, true, pickled_call("(1 << 20,)")),
                                               python_task(4, mul, false, pickled_call("(b'e', 65536)")),
                                               python_task(5, mul, false, pickled_call("(b'f', 40 << 20)"))})});
  auto got = ix_.results(5, kPythonDeadline);
  ASSERT_EQ(got.size(), 5u) << log_text();
  for (std::uint64_t id = 1; id <= 5; ++id) EXPECT_EQ(got[id].status, proto::kStatusOk) << got[id].payload;
  auto repeated = [](const std::string& unit, std::size_t times) {
    std::string out;
    out.reserve(unit.size() * times);
    for (std::size_t i = 0; i < times; ++i) out += unit;
    return out;
  };
  ASSERT_EQ(got[1].buffers.size(), 1u);
  EXPECT_TRUE(got[1].buffers[0].view() == repeated("ab", std::size_t{3} << 20));
  EXPECT_NE(got[1].payload.find("_rebuild_buffer"), std::string::npos) << "rebuilt from its buffer";
  EXPECT_TRUE(got[2].buffers.empty()) << "a small result stays in its payload";
  EXPECT_EQ(python_unpickle_repr(got[2].payload), "b'" + repeated("cd", 10) + "'");
  ASSERT_EQ(got[3].buffers.size(), 1u);
  EXPECT_TRUE(got[3].buffers[0].view() == std::string(std::size_t{1} << 20, '\0'));
  ASSERT_EQ(got[4].buffers.size(), 1u);  // exactly 64 KiB
  EXPECT_TRUE(got[4].buffers[0].view() == std::string(65536, 'e'));
  ASSERT_EQ(got[5].buffers.size(), 1u);
  EXPECT_TRUE(got[5].buffers[0].view() == std::string(std::size_t{40} << 20, 'f'));
  // The link to the worker is still in step: the next task runs normally.
  ix_.send(proto::InterchangeMessage{tasks_of({python_task(6, mul, false, pickled_call("(b'g', 2)"))})});
  auto after = ix_.results(1, kPythonDeadline);
  ASSERT_EQ(after.size(), 1u);
  EXPECT_EQ(python_unpickle_repr(after[6].payload), "b'gg'");
  ix_.send(proto::InterchangeMessage{proto::Shutdown{}});
  EXPECT_EQ(pool_.wait_exit(kDeadline), 0);
  expect_no_live_descendants();
}

TEST_F(ProcessPoolTest, KilledWorkerIsReportedLostAndReplaced) {
  REQUIRE_PYTHON_WORKER();
  const Fn system = pickled_function("os", "system");
  const Fn add = pickled_function("operator", "add");
  ASSERT_FALSE(system.bytes.empty());
  ASSERT_TRUE(start_registered({"--python", "python3", "--workers", "2"}));
  Fifo started(dir_ / "started");
  const std::string command = "echo started > " + started.path().string() + "; sleep 30";
  ix_.send(proto::InterchangeMessage{tasks_of({python_task(17, system, true, pickled_call("('" + command + "',)"))})});
  ASSERT_TRUE(started.wait_readable(kPythonDeadline)) << "the task never started";

  // The pool's children are its workers; kill them all, so the next task can only be served by
  // a replacement.
  const std::vector<pid_t> workers = children_of(pool_.pid());
  ASSERT_EQ(workers.size(), 2u) << describe_pids(workers);
  for (pid_t w : workers) kill(w, SIGKILL);

  auto got = ix_.results(1, kDeadline);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[17].status, proto::kStatusWorkerLost);
  EXPECT_NE(got[17].payload.find("signal 9"), std::string::npos) << got[17].payload;
  EXPECT_NE(got[17].payload.find("task 17"), std::string::npos) << got[17].payload;

  ix_.send(proto::InterchangeMessage{tasks_of({python_task(18, add, true, pickled_call("(2, 3)"))})});
  auto next = ix_.results(1, kPythonDeadline);
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[18].status, proto::kStatusOk) << next[18].payload;
  EXPECT_EQ(python_unpickle_repr(next[18].payload), "5");
  const std::vector<pid_t> now = children_of(pool_.pid());
  for (pid_t w : workers) EXPECT_EQ(std::count(now.begin(), now.end(), w), 0);

  ix_.send(proto::InterchangeMessage{proto::Shutdown{}});
  EXPECT_EQ(pool_.wait_exit(kDeadline), 0);
  expect_no_live_descendants();
}

// ---- followers: a task with `after` runs on the value of the task it follows.

// The payload of fn(<value of input 0>, extra): the input is referred to as pervade.serialize
// does it (a call of _dependency(0)).
std::string pickled_call_on_input(const std::string& extra) {
  return pickled_call("(type('D', (), {'__reduce__': lambda s: (__import__('pervade.serialize', "
                      "fromlist=['_dependency'])._dependency, (0,))})(), " + extra + ")");
}

proto::Task follower_task(std::uint64_t id, std::uint64_t input_task, const Fn& fn, bool with_fn,
                          const std::string& extra) {
  proto::Task t = python_task(id, fn, with_fn, pickled_call_on_input(extra));
  t.inputs = {""};
  t.after = {proto::After{0, input_task}};
  return t;
}

TEST_F(ProcessPoolTest, FollowersRunOnTheValueOfTheTaskTheyFollow) {
  REQUIRE_PYTHON_WORKER();
  const Fn add = pickled_function("operator", "add");
  ASSERT_TRUE(start_registered({"--python", "python3", "--workers", "1"}));
  // 2 follows 1 and 3 follows 2: 2 waits in the worker's socket behind 1, 3 waits in the pool.
  ix_.send(proto::InterchangeMessage{tasks_of({python_task(1, add, true, pickled_call("(2, 3)")),
                                               follower_task(2, 1, add, false, "10"),
                                               follower_task(3, 2, add, false, "100")})});
  std::vector<std::size_t> order;
  auto got = ix_.results(3, kPythonDeadline, &order);
  ASSERT_EQ(got.size(), 3u);
  for (auto& [id, r] : got) EXPECT_EQ(r.status, proto::kStatusOk) << "task " << id << ": " << r.payload;
  EXPECT_EQ(python_unpickle_repr(got[1].payload), "5");
  EXPECT_EQ(python_unpickle_repr(got[2].payload), "15");
  EXPECT_EQ(python_unpickle_repr(got[3].payload), "115");

  // A follower that arrives after its input finished here still gets the value; one of a task
  // this pool never had goes back as not started.
  ix_.send(proto::InterchangeMessage{tasks_of({follower_task(4, 3, add, false, "1000"),
                                               follower_task(5, 999, add, false, "1")})});
  auto late = ix_.results(2, kPythonDeadline);
  ASSERT_EQ(late.size(), 2u);
  EXPECT_EQ(late[4].status, proto::kStatusOk) << late[4].payload;
  EXPECT_EQ(python_unpickle_repr(late[4].payload), "1115");
  EXPECT_EQ(late[5].status, proto::kStatusNotStarted) << late[5].payload;
  ix_.send(proto::InterchangeMessage{proto::Shutdown{}});
  EXPECT_EQ(pool_.wait_exit(kDeadline), 0);
}

TEST_F(ProcessPoolTest, FollowersOfAFailedTaskAreNotStarted) {
  REQUIRE_PYTHON_WORKER();
  const Fn div = pickled_function("operator", "truediv");
  ASSERT_TRUE(start_registered({"--python", "python3", "--workers", "2"}));
  ix_.send(proto::InterchangeMessage{tasks_of({python_task(1, div, true, pickled_call("(1, 0)")),
                                               follower_task(2, 1, div, false, "1"),
                                               follower_task(3, 2, div, false, "1")})});
  auto got = ix_.results(3, kPythonDeadline);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[1].status, proto::kStatusException);
  EXPECT_EQ(got[2].status, proto::kStatusNotStarted) << got[2].payload;
  EXPECT_EQ(got[3].status, proto::kStatusNotStarted) << got[3].payload;
  ix_.send(proto::InterchangeMessage{proto::Shutdown{}});
  EXPECT_EQ(pool_.wait_exit(kDeadline), 0);
}

TEST_F(ProcessPoolTest, FollowersOfATaskWhoseWorkerDiesOrIsCancelledAreNotStarted) {
  REQUIRE_PYTHON_WORKER();
  const Fn system = pickled_function("os", "system");
  const Fn add = pickled_function("operator", "add");
  ASSERT_TRUE(start_registered({"--python", "python3", "--workers", "1"}));
  Fifo started(dir_ / "started");
  const std::string command = "echo started > " + started.path().string() + "; sleep 30";
  ix_.send(proto::InterchangeMessage{tasks_of({python_task(1, system, true, pickled_call("('" + command + "',)")),
                                               follower_task(2, 1, add, true, "1"),
                                               follower_task(3, 2, add, false, "1"),
                                               follower_task(4, 3, add, false, "1")})});
  ASSERT_TRUE(started.wait_readable(kPythonDeadline)) << "the task never started";
  ix_.send(proto::InterchangeMessage{proto::Cancel{{4}}});  // held in the pool: dropped
  auto cancelled = ix_.results(1, kDeadline);
  ASSERT_EQ(cancelled.size(), 1u);
  EXPECT_EQ(cancelled[4].status, proto::kStatusCancelled);
  const std::vector<pid_t> workers = children_of(pool_.pid());
  ASSERT_EQ(workers.size(), 1u);
  kill(workers[0], SIGKILL);
  auto got = ix_.results(3, kDeadline);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[1].status, proto::kStatusWorkerLost);
  EXPECT_EQ(got[2].status, proto::kStatusNotStarted) << got[2].payload;  // it waited in the dead worker's socket
  EXPECT_EQ(got[3].status, proto::kStatusNotStarted) << got[3].payload;  // it waited in the pool
  // The replacement serves the next task.
  ix_.send(proto::InterchangeMessage{tasks_of({python_task(5, add, false, pickled_call("(2, 3)"))})});
  auto next = ix_.results(1, kPythonDeadline);
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[5].status, proto::kStatusOk) << next[5].payload;
  ix_.send(proto::InterchangeMessage{proto::Shutdown{}});
  EXPECT_EQ(pool_.wait_exit(kDeadline), 0);
  expect_no_live_descendants();
}

TEST_F(ProcessPoolTest, CancelKillsTheWorkerRunningThePythonTask) {
  REQUIRE_PYTHON_WORKER();
  const Fn system = pickled_function("os", "system");
  const Fn add = pickled_function("operator", "add");
  ASSERT_TRUE(start_registered({"--python", "python3", "--workers", "1"}));
  Fifo started(dir_ / "started");
  const std::string command = "echo started > " + started.path().string() + "; sleep 100";
  ix_.send(proto::InterchangeMessage{tasks_of({python_task(5, system, true, pickled_call("('" + command + "',)"))})});
  ASSERT_TRUE(started.wait_readable(kPythonDeadline)) << "the task never started";
  const std::vector<pid_t> workers = children_of(pool_.pid());
  ASSERT_EQ(workers.size(), 1u) << describe_pids(workers);
  ix_.send(proto::InterchangeMessage{proto::Cancel{{5}}});
  auto got = ix_.results(1, kPythonDeadline);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[5].status, proto::kStatusCancelled);
  const std::vector<pid_t> now = children_of(pool_.pid());
  EXPECT_EQ(std::count(now.begin(), now.end(), workers[0]), 0) << "the cancelled task's worker is still there";
  // The replacement works.
  ix_.send(proto::InterchangeMessage{tasks_of({python_task(6, add, true, pickled_call("(2, 3)"))})});
  auto next = ix_.results(1, kPythonDeadline);
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(python_unpickle_repr(next[6].payload), "5");
  ix_.send(proto::InterchangeMessage{proto::Shutdown{}});
  EXPECT_EQ(pool_.wait_exit(kDeadline), 0);
  expect_no_live_descendants();
}

TEST_F(ProcessPoolTest, TaskWaitingOnAKilledWorkerIsRunByItsReplacement) {
  REQUIRE_PYTHON_WORKER();
  const Fn system = pickled_function("os", "system");
  const Fn add = pickled_function("operator", "add");
  ASSERT_TRUE(start_registered({"--python", "python3", "--workers", "1"}));
  // A short task first: a worker whose last task was short is given a second one to hold.
  ix_.send(proto::InterchangeMessage{tasks_of({python_task(1, add, true, pickled_call("(1, 1)"))})});
  ASSERT_EQ(ix_.results(1, kPythonDeadline).size(), 1u);

  Fifo started(dir_ / "started");
  const std::string command = "echo started > " + started.path().string() + "; sleep 30";
  ix_.send(proto::InterchangeMessage{tasks_of({python_task(2, system, true, pickled_call("('" + command + "',)")),
                                               python_task(3, add, false, pickled_call("(2, 3)"))})});
  ASSERT_TRUE(started.wait_readable(kPythonDeadline)) << "the task never started";
  const std::vector<pid_t> workers = children_of(pool_.pid());
  ASSERT_EQ(workers.size(), 1u) << describe_pids(workers);
  kill(workers[0], SIGKILL);

  // The running task is lost; the one behind it had not started and runs on the replacement.
  auto got = ix_.results(2, kPythonDeadline);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[2].status, proto::kStatusWorkerLost);
  EXPECT_EQ(got[3].status, proto::kStatusOk) << got[3].payload;
  EXPECT_EQ(python_unpickle_repr(got[3].payload), "5");

  ix_.send(proto::InterchangeMessage{proto::Shutdown{}});
  EXPECT_EQ(pool_.wait_exit(kDeadline), 0);
  expect_no_live_descendants();
}

// Short tasks, so that the worker is given several at a time (a deep pipeline, docs/htex.md).
void warm_up(FakeInterchange& ix, const Fn& add) {
  std::vector<proto::Task> batch;
  for (int i = 0; i < 20; ++i) batch.push_back(python_task(1000 + i, add, i == 0, pickled_call("(1, 1)")));
  ix.send(proto::InterchangeMessage{tasks_of(batch)});
  auto got = ix.results(batch.size(), kPythonDeadline);
  ASSERT_EQ(got.size(), batch.size());
  for (auto& [id, r] : got) ASSERT_EQ(r.status, proto::kStatusOk) << "task " << id << ": " << r.payload;
}

// The tasks behind one that loses its worker had not started: each runs once on the replacement,
// however many of them the worker held.
TEST_F(ProcessPoolTest, TasksWaitingOnAKilledWorkerRunOnItsReplacement) {
  REQUIRE_PYTHON_WORKER();
  const Fn system = pickled_function("os", "system");
  const Fn add = pickled_function("operator", "add");
  ASSERT_TRUE(start_registered({"--python", "python3", "--workers", "1"}));
  ASSERT_NO_FATAL_FAILURE(warm_up(ix_, add));
  Fifo started(dir_ / "started");
  const std::string command = "echo started > " + started.path().string() + "; sleep 30";
  std::vector<proto::Task> batch{python_task(100, system, true, pickled_call("('" + command + "',)"))};
  for (int i = 1; i <= 10; ++i) batch.push_back(python_task(100 + i, add, false, pickled_call("(" + std::to_string(i) + ", 1)")));
  ix_.send(proto::InterchangeMessage{tasks_of(batch)});
  ASSERT_TRUE(started.wait_readable(kPythonDeadline)) << "the task never started";
  const std::vector<pid_t> workers = children_of(pool_.pid());
  ASSERT_EQ(workers.size(), 1u) << describe_pids(workers);
  kill(workers[0], SIGKILL);

  auto got = ix_.results(batch.size(), kPythonDeadline);
  ASSERT_EQ(got.size(), batch.size());
  EXPECT_EQ(got[100].status, proto::kStatusWorkerLost);
  for (int i = 1; i <= 10; ++i) {
    const auto id = static_cast<std::uint64_t>(100 + i);
    EXPECT_EQ(got[id].status, proto::kStatusOk) << "task " << id << ": " << got[id].payload;
    EXPECT_EQ(python_unpickle_repr(got[id].payload), std::to_string(i + 1));
  }
  ix_.send(proto::InterchangeMessage{proto::Shutdown{}});
  EXPECT_EQ(pool_.wait_exit(kDeadline), 0);
  expect_no_live_descendants();
}

// A cancelled task that waits in a worker's socket (or in the pool's queue) is stopped when it
// starts; the tasks before it finish and those behind it run on the replacement, once each.
TEST_F(ProcessPoolTest, CancelledTaskWaitingBehindOthersIsStoppedWhenItStarts) {
  REQUIRE_PYTHON_WORKER();
  const Fn system = pickled_function("os", "system");
  const Fn add = pickled_function("operator", "add");
  ASSERT_TRUE(start_registered({"--python", "python3", "--workers", "1"}));
  ASSERT_NO_FATAL_FAILURE(warm_up(ix_, add));
  Fifo started(dir_ / "started");
  Fifo gate(dir_ / "gate");
  Fifo ran(dir_ / "ran");
  const std::string first = "echo started > " + started.path().string() + "; read line < " + gate.path().string();
  const std::string cancelled = "echo ran > " + ran.path().string() + "; sleep 30";
  std::vector<proto::Task> batch{python_task(200, system, true, pickled_call("('" + first + "',)"))};
  for (int i = 1; i <= 2; ++i) batch.push_back(python_task(200 + i, add, false, pickled_call("(" + std::to_string(i) + ", 1)")));
  batch.push_back(python_task(203, system, false, pickled_call("('" + cancelled + "',)")));
  for (int i = 4; i <= 6; ++i) batch.push_back(python_task(200 + i, add, false, pickled_call("(" + std::to_string(i) + ", 1)")));
  ix_.send(proto::InterchangeMessage{tasks_of(batch)});
  ASSERT_TRUE(started.wait_readable(kPythonDeadline)) << "the task never started";
  const std::vector<pid_t> workers = children_of(pool_.pid());
  ASSERT_EQ(workers.size(), 1u) << describe_pids(workers);
  // The pool reads its messages in order: once the shell task's result is back, it has the CANCEL.
  ix_.send(proto::InterchangeMessage{proto::Cancel{{203}}});
  ix_.send(proto::InterchangeMessage{tasks_of({shell_task(299, "true")})});
  std::map<std::uint64_t, proto::TaskResult> got;
  const auto deadline = Clock::now() + kPythonDeadline;
  while (!got.contains(299) && Clock::now() < deadline) got.merge(ix_.results(1, deadline - Clock::now()));
  ASSERT_TRUE(got.contains(299)) << "no result for the shell task";
  ASSERT_TRUE(gate.write_line());

  got.merge(ix_.results(batch.size() + 1 - got.size(), kPythonDeadline));
  ASSERT_EQ(got.size(), batch.size() + 1);
  EXPECT_EQ(got[200].status, proto::kStatusOk) << got[200].payload;
  EXPECT_EQ(got[203].status, proto::kStatusCancelled) << got[203].payload;
  for (int i : {1, 2, 4, 5, 6}) {
    const auto id = static_cast<std::uint64_t>(200 + i);
    EXPECT_EQ(got[id].status, proto::kStatusOk) << "task " << id << ": " << got[id].payload;
    EXPECT_EQ(python_unpickle_repr(got[id].payload), std::to_string(i + 1));
  }
  // Stopped as it started (the pipeline was deep) or dropped from the pool's queue before.
  if (ran.wait_readable(0s)) {
    const std::vector<pid_t> now = children_of(pool_.pid());
    EXPECT_EQ(std::count(now.begin(), now.end(), workers[0]), 0) << "the worker running the cancelled task is still there";
  }
  ix_.send(proto::InterchangeMessage{proto::Shutdown{}});
  EXPECT_EQ(pool_.wait_exit(kDeadline), 0);
  expect_no_live_descendants();
}

}  // namespace
