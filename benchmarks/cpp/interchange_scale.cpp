// One interchange against many simulated pools (issue 17): how its cost grows with pools,
// workers and queued tasks, and whether it stays correct when pools misbehave.
//
//   build/benchmarks/cpp/interchange_scale --pools 1000 --workers-per-pool 100 --tasks 1000000 --service-ms 0 --json
//   build/benchmarks/cpp/interchange_scale --pools 10000 --workers-per-pool 100 --tasks 1000000 --lose-pools 1000 --heartbeat-threshold 5 --json
//   build/benchmarks/cpp/interchange_scale --pools 8 --tasks 2000 --misbehave vanish --heartbeat-period 0.5 --heartbeat-threshold 2
//
// The driver (this process) runs a real Interchange (src/interchange: the ROUTER socket and the
// Dispatcher on their thread) and drives tasks through it directly, without Python or a
// DataFlowKernel, so that what is measured is the interchange. The pools are simulated by
// child processes (this binary again, --role pools), each holding up to --pools-per-process
// ZeroMQ DEALER connections: real registration, real heartbeats both ways, and for each pool W
// workers that answer a task at once (--service-ms 0, one RESULTS message per TASKS message)
// or after the service time, W at a time. A connection costs a child two descriptors and the
// driver one, so the benchmark raises RLIMIT_NOFILE (to the kernel's nr_open as root, else to
// the hard limit) in the driver and the children, and reports the limit it got. Each child
// opens its connections in waves of --connect-wave (default 500), the next once the previous
// registered or after a second: 10,000 connections at once overflow the listen queue
// (net.core.somaxconn, 4096 here) and TCP then retries after 1, 3, 7, 15... s.
//
// Phases, each measured on its own:
//   dispatcher  the Dispatcher alone (no sockets): heap bytes (malloc's count, not pages) per
//               registered pool and per queued task
//   queue       min(tasks, 1,000,000) tasks queued in the interchange with no pool yet: the
//               driver's RSS per queued task, then every one cancelled (CPU per cancel)
//   register    the children start and all pools register: register_s, and the driver's memory
//               per pool: RSS; heap (ours, the dispatcher's above, and ZeroMQ's: the rest);
//               kernel socket buffers of the interchange's connections (`ss -tm`: r + w + f)
//   idle        --idle-s seconds of heartbeats only: interchange CPU per heartbeat exchange,
//               and what that is at the default 30 s period for this many pools
//   run         all tasks submitted at once (in chunks of 10,000), each completing exactly
//               once: throughput, latency (submission to completion, queueing included),
//               interchange CPU per task. Tasks a lost pool held come back as ManagerLost and
//               are submitted again (a retry), as the executor would.
// Misbehaving pools (--misbehave): register-twice (every pool sends REGISTER twice, and every
// other pool gets a twin connection that registers with the same pool id), bogus-results
// (each TASKS is also answered with results for tasks the pool never got), vanish (a tenth of
// the pools, or --lose-pools, disappear when their first tasks arrive, holding them and leaving a
// multipart message half sent, and a raw TCP connection sends half a ZeroMQ greeting), and
// heartbeat-flood (every pool sends heartbeats without pause). The run fails (exit status 1)
// unless every task completes exactly once.
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <queue>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <fmt/core.h>
#include <zmq.hpp>

#include "interchange/interchange.hpp"

extern char** environ;

namespace {

using namespace pervade;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

struct Options {
  std::string role = "driver";
  int pools = 10;
  int workers = 1;
  long tasks = 100'000;
  double service_ms = 0;
  bool json = false;
  int pools_per_process = 2500;
  int connect_wave = 500;
  double heartbeat_period = 30;
  double heartbeat_threshold = 120;
  double idle_s = 0;
  int short_task_prefetch = 16;  // the dispatcher's (HtexOptions::short_task_prefetch)
  int lose_pools = -1;  // -1: none, or a tenth with --misbehave vanish
  std::string misbehave;
  double timeout_s = 600;
  // --role pools
  std::string url;
  int first = 0;
  int count = 0;
  int vanish_every = 0;  // pools whose index is a multiple vanish on their first TASKS (0: none)
};

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr,
               "interchange_scale: %s\n"
               "usage: interchange_scale [--pools N] [--workers-per-pool W] [--tasks T] [--service-ms S] [--json]\n"
               "         [--pools-per-process P] [--connect-wave C] [--heartbeat-period S] [--heartbeat-threshold S] [--idle-s S]\n"
               "         [--short-task-prefetch N] [--lose-pools K] [--misbehave register-twice|bogus-results|vanish|heartbeat-flood]\n"
               "         [--timeout-s S]\n",
               why.c_str());
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--json") {
      o.json = true;
      continue;
    }
    if (i + 1 >= argc) usage(a + " needs a value");
    const std::string v = argv[++i];
    try {
      if (a == "--role") o.role = v;
      else if (a == "--pools") o.pools = std::stoi(v);
      else if (a == "--workers-per-pool") o.workers = std::stoi(v);
      else if (a == "--tasks") o.tasks = std::stol(v);
      else if (a == "--service-ms") o.service_ms = std::stod(v);
      else if (a == "--pools-per-process") o.pools_per_process = std::stoi(v);
      else if (a == "--connect-wave") o.connect_wave = std::stoi(v);
      else if (a == "--heartbeat-period") o.heartbeat_period = std::stod(v);
      else if (a == "--heartbeat-threshold") o.heartbeat_threshold = std::stod(v);
      else if (a == "--idle-s") o.idle_s = std::stod(v);
      else if (a == "--short-task-prefetch") o.short_task_prefetch = std::stoi(v);
      else if (a == "--lose-pools") o.lose_pools = std::stoi(v);
      else if (a == "--misbehave") o.misbehave = v;
      else if (a == "--timeout-s") o.timeout_s = std::stod(v);
      else if (a == "--url") o.url = v;
      else if (a == "--first") o.first = std::stoi(v);
      else if (a == "--count") o.count = std::stoi(v);
      else if (a == "--vanish-every") o.vanish_every = std::stoi(v);
      else usage("unknown option " + a);
    } catch (const std::logic_error&) {
      usage("bad value for " + a + ": " + v);
    }
  }
  if (!o.misbehave.empty() && o.misbehave != "register-twice" && o.misbehave != "bogus-results" &&
      o.misbehave != "vanish" && o.misbehave != "heartbeat-flood")
    usage("unknown --misbehave mode " + o.misbehave);
  if (o.pools < 1 || o.workers < 1 || o.tasks < 1 || o.pools_per_process < 1 || o.connect_wave < 1 || o.heartbeat_period <= 0 ||
      o.heartbeat_threshold <= 0 || o.service_ms < 0)
    usage("counts must be >= 1, times > 0");
  if (o.heartbeat_threshold <= o.heartbeat_period)
    usage("--heartbeat-threshold must exceed --heartbeat-period, or every quiet pool is lost");
  return o;
}

// As many descriptors as the kernel allows: nr_open when we may raise the hard limit (root),
// else the hard limit. Returns the soft limit now in force.
rlim_t raise_fd_limit() {
  rlimit r{};
  ::getrlimit(RLIMIT_NOFILE, &r);
  rlim_t want = r.rlim_max;
  std::ifstream nr("/proc/sys/fs/nr_open");
  rlim_t nr_open = 0;
  if (nr >> nr_open && nr_open > want) {
    rlimit raised{nr_open, nr_open};
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) return nr_open;
  }
  r.rlim_cur = want;
  ::setrlimit(RLIMIT_NOFILE, &r);
  ::getrlimit(RLIMIT_NOFILE, &r);
  return r.rlim_cur;
}

std::int64_t ns_since_boot(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

// ================================================================= the simulated pools

struct SimPool {
  std::string identity;
  std::string pool_id;
  std::size_t slot = 0;  // its index in PoolProcess::pools_
  std::unique_ptr<zmq::socket_t> socket;
  bool alive = true;
  bool registered = false;
  bool twin = false;  // register-twice: the second connection with a pool id in use
  int busy = 0;
  std::deque<std::uint64_t> waiting;
  std::vector<std::uint64_t> finished;  // results to send this round
  Clock::time_point last_sent{};
  double period = 30;
};

struct Timer {
  Clock::time_point at;
  std::size_t pool;
  std::uint64_t task;
  bool operator>(const Timer& o) const { return at > o.at; }
};

class PoolProcess {
 public:
  explicit PoolProcess(const Options& o) : o_(o) {
    context_.set(zmq::ctxopt::max_sockets, 2 * o.count + 64);
    epoll_ = ::epoll_create1(EPOLL_CLOEXEC);
  }

  int run() {
    const bool flood = o_.misbehave == "heartbeat-flood";
    std::vector<epoll_event> ready(1024);
    auto next_sweep = Clock::now();
    auto next_wave = Clock::now();
    while (live_ > 0 || opened_ < o_.count) {
      // Connections open in waves: a wave once the previous one registered (or a second
      // passed), so that the connections waiting to be accepted stay within the listen backlog.
      if (opened_ < o_.count && (answered_ >= opened_ || Clock::now() >= next_wave)) {
        for (int end = std::min(o_.count, opened_ + o_.connect_wave); opened_ < end; ++opened_)
          open(o_.first + opened_, "p" + std::to_string(o_.first + opened_), "", false);
        next_wave = Clock::now() + 1s;
      }
      if (::getppid() == 1) return 1;  // the driver is gone
      int timeout = 100;
      if (!timers_.empty())
        timeout = static_cast<int>(std::clamp<long>(
            std::chrono::duration_cast<std::chrono::milliseconds>(timers_.top().at - Clock::now()).count(), 0, 100));
      if (flood) timeout = 1;
      const int n = ::epoll_wait(epoll_, ready.data(), static_cast<int>(ready.size()), timeout);
      for (int i = 0; i < n; ++i) drain_socket(ready[i].data.u64);
      settle();
      const auto now = Clock::now();
      while (!timers_.empty() && timers_.top().at <= now) {
        Timer t = timers_.top();
        timers_.pop();
        SimPool& p = pools_[t.pool];
        if (!p.alive) continue;
        --p.busy;
        p.finished.push_back(t.task);
        start_waiting(t.pool, now);
        dirty_.push_back(t.pool);
      }
      settle();
      // Heartbeats (and, flooding, many of them); and a look at every socket now and then.
      if (now >= next_sweep || flood) {
        next_sweep = now + 100ms;
        for (std::size_t i = 0; i < pools_.size(); ++i) {
          SimPool& p = pools_[i];
          if (!p.alive) continue;
          if (flood && p.registered) {
            for (int k = 0; k < 20; ++k) send(p, protocol::Heartbeat{}, now);
          } else if (p.registered && now - p.last_sent >= std::chrono::duration<double>(p.period)) {
            send(p, protocol::Heartbeat{}, now);
          }
          drain_socket(i);
        }
        settle();
      }
    }
    return 0;
  }

 private:
  void open(int index, std::string identity, std::string pool_id, bool twin) {
    SimPool p;
    p.identity = std::move(identity);
    p.pool_id = pool_id.empty() ? p.identity : pool_id;
    p.twin = twin;
    p.socket = std::make_unique<zmq::socket_t>(context_, zmq::socket_type::dealer);
    p.socket->set(zmq::sockopt::linger, 0);
    p.socket->set(zmq::sockopt::sndhwm, 0);
    p.socket->set(zmq::sockopt::rcvhwm, 0);
    p.socket->set(zmq::sockopt::routing_id, p.identity);
    p.socket->connect(o_.url);
    index_.push_back(index);
    const int fd = p.socket->get(zmq::sockopt::fd);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = pools_.size();
    p.slot = pools_.size();
    ::epoll_ctl(epoll_, EPOLL_CTL_ADD, fd, &ev);
    pools_.push_back(std::move(p));
    ++live_;
    SimPool& added = pools_.back();
    register_pool(added);
    if (o_.misbehave == "register-twice") register_pool(added);
  }

  void register_pool(SimPool& p) {
    protocol::Register r;
    r.pervade_version = "0.1.0";
    r.pool_id = p.pool_id;
    r.block_id = "0";
    r.hostname = "sim";
    r.worker_count = o_.workers;
    send(p, r, Clock::now());
  }

  template <class M>
  void send(SimPool& p, const M& m, Clock::time_point now) {
    const std::string bytes = protocol::encode(protocol::PoolMessage{m});
    p.socket->send(zmq::buffer(bytes), zmq::send_flags::dontwait);
    p.last_sent = now;
    sent_.push_back(p.slot);
  }

  // Sends the results due, and looks again at each socket just sent on: a ZeroMQ descriptor
  // signals edges only, and a send can take the edge of a message that arrived meanwhile.
  void settle() {
    do {
      flush_results();
      for (std::size_t i : std::exchange(sent_, {})) drain_socket(i);
    } while (!dirty_.empty());
  }

  void close(SimPool& p) {
    ::epoll_ctl(epoll_, EPOLL_CTL_DEL, p.socket->get(zmq::sockopt::fd), nullptr);
    p.socket->close();
    p.alive = false;
    --live_;
  }

  // Vanish mid-message: the first frame of a multipart message is sent and the connection
  // closes before the rest; once per process, also half a ZeroMQ greeting on a raw TCP
  // connection. The time goes to stdout for the driver (time to notice the loss).
  void vanish(SimPool& p) {
    const std::string half = protocol::encode(protocol::PoolMessage{protocol::Heartbeat{}});
    p.socket->send(zmq::buffer(half), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
    close(p);
    std::printf("vanished %s %lld\n", p.identity.c_str(), static_cast<long long>(ns_since_boot(Clock::now())));
    std::fflush(stdout);
    if (!sent_half_greeting_) {
      sent_half_greeting_ = true;
      half_greeting();
    }
  }

  void half_greeting() {
    const auto colon = o_.url.rfind(':');
    const int port = std::stoi(o_.url.substr(colon + 1));
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
      const unsigned char greeting[] = {0xFF, 0, 0, 0, 0};  // the signature's first bytes only
      if (::write(fd, greeting, sizeof greeting) < 0) {
        // Nothing to do: the point is a peer that goes away.
      }
    }
    ::close(fd);
  }

  void drain_socket(std::size_t i) {
    SimPool& p = pools_[i];
    const auto now = Clock::now();
    while (p.alive) {
      if (!(p.socket->get(zmq::sockopt::events) & ZMQ_POLLIN)) break;
      std::vector<protocol::SharedBuffer> frames;
      for (bool more = true; more;) {
        auto m = std::make_shared<zmq::message_t>();
        if (!p.socket->recv(*m, zmq::recv_flags::dontwait)) break;
        more = m->more();
        frames.push_back({m, static_cast<const char*>(m->data()), m->size()});
      }
      if (frames.empty()) break;
      auto message = protocol::decode_interchange_message(frames);
      if (!message) continue;
      handle(i, std::move(*message), now);
    }
  }

  void handle(std::size_t i, protocol::InterchangeMessage m, Clock::time_point now) {
    SimPool& p = pools_[i];
    if (auto* reg = std::get_if<protocol::Registered>(&m)) {
      if (p.registered) return;
      p.registered = true;
      answered_ += !p.twin;
      p.period = reg->heartbeat_period;
      // register-twice: every other pool gets a twin claiming its pool id, once it holds it.
      if (o_.misbehave == "register-twice" && !p.twin && index_[i] % 2 == 0)
        open(index_[i], "twin-" + p.identity, p.pool_id, true);
    } else if (std::holds_alternative<protocol::Refused>(m)) {
      answered_ += !p.registered && !p.twin;
      if (!p.registered) close(p);  // a refused twin; a pool's own second REGISTER changes nothing
    } else if (std::holds_alternative<protocol::Shutdown>(m)) {
      close(p);
    } else if (auto* tasks = std::get_if<protocol::Tasks>(&m)) {
      if (o_.vanish_every > 0 && !p.twin && index_[i] % o_.vanish_every == 0) {
        vanish(p);
        return;
      }
      if (o_.misbehave == "bogus-results") {
        protocol::Results bogus;
        for (const auto& t : tasks->tasks) {
          bogus.results.push_back({t.task_id + 1, protocol::kStatusOk, {}});       // likely another pool's
          bogus.results.push_back({t.task_id | (1ULL << 50), protocol::kStatusOk, {}});  // no such task
        }
        send(p, bogus, now);
      }
      for (const auto& t : tasks->tasks) p.waiting.push_back(t.task_id);
      start_waiting(i, now);
      if (!p.finished.empty()) dirty_.push_back(i);
    }
  }

  // Starts waiting tasks on free workers: at once with no service time, else on a timer.
  void start_waiting(std::size_t i, Clock::time_point now) {
    SimPool& p = pools_[i];
    if (o_.service_ms <= 0) {
      p.finished.insert(p.finished.end(), p.waiting.begin(), p.waiting.end());
      p.waiting.clear();
      return;
    }
    const auto service = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double, std::milli>(o_.service_ms));
    while (p.busy < o_.workers && !p.waiting.empty()) {
      ++p.busy;
      timers_.push(Timer{now + service, i, p.waiting.front()});
      p.waiting.pop_front();
    }
  }

  void flush_results() {
    const auto now = Clock::now();
    for (std::size_t i : dirty_) {
      SimPool& p = pools_[i];
      if (!p.alive || p.finished.empty()) continue;
      protocol::Results r;
      // Each ran for the service time, as a real pool would report it (TaskResult::run_time).
      for (auto id : p.finished) r.results.push_back({id, protocol::kStatusOk, {}, {}, run_time_});
      p.finished.clear();
      send(p, r, now);
    }
    dirty_.clear();
  }

  const Options& o_;
  const std::chrono::microseconds run_time_{std::llround(o_.service_ms * 1000)};
  zmq::context_t context_{1};
  int epoll_ = -1;
  std::deque<SimPool> pools_;   // deque: references stay valid as twins are added
  std::vector<int> index_;      // the pool's index among all pools (twins: their original's)
  std::vector<std::size_t> dirty_;  // pools with results to send
  std::vector<std::size_t> sent_;   // pools sent to since their socket was last read
  std::priority_queue<Timer, std::vector<Timer>, std::greater<>> timers_;
  int live_ = 0;
  int opened_ = 0;    // pools opened so far (twins not counted)
  int answered_ = 0;  // of those, registered or refused
  bool sent_half_greeting_ = false;
};

// ================================================================= the driver

long rss_bytes() {
  std::ifstream statm("/proc/self/statm");
  long pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * ::sysconf(_SC_PAGESIZE);
}

// Bytes allocated with malloc (by this process's code and libzmq's) and not freed.
long heap_bytes() {
  const struct mallinfo2 m = ::mallinfo2();
  return static_cast<long>(m.uordblks + m.hblkhd);
}

// Bytes the kernel holds for the established TCP connections on this local port (received and
// queued to send, and reserved: skmem's r, w and f, from `ss -tm`), or -1 without ss.
long kernel_socket_bytes(int port) {
  const std::string command = fmt::format("ss -tmnH state established '( sport = :{} )' 2>/dev/null", port);
  FILE* ss = ::popen(command.c_str(), "r");
  if (!ss) return -1;
  std::string text;
  char buf[65536];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, ss)) > 0;) text.append(buf, n);
  if (::pclose(ss) != 0) return -1;
  long total = 0;
  for (std::size_t pos = 0; (pos = text.find("skmem:(", pos)) != std::string::npos;) {
    pos += 7;
    const std::size_t end = text.find(')', pos);
    std::string fields = text.substr(pos, end - pos);
    for (std::size_t f = 0; f < fields.size();) {
      const std::size_t comma = std::min(fields.find(',', f), fields.size());
      const std::string item = fields.substr(f, comma - f);
      if (!item.empty() && (item[0] == 'r' || item[0] == 'w' || item[0] == 'f') && std::isdigit(static_cast<unsigned char>(item[1])))
        total += std::stol(item.substr(1));
      f = comma + 1;
    }
  }
  return total;
}

// The CPU time of one thread of this process (a per-thread CPU clock made from its tid, as
// glibc's pthread_getcpuclockid does).
double thread_cpu_s(pid_t tid) {
  const clockid_t clock = static_cast<clockid_t>((~static_cast<unsigned>(tid) << 3) | 6);
  timespec ts{};
  if (::clock_gettime(clock, &ts) != 0) return 0;
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

pid_t thread_named(const std::string& name) {
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(e.path() / "comm");
    std::string n;
    std::getline(comm, n);
    if (n == name) return static_cast<pid_t>(std::stoi(e.path().filename().string()));
  }
  return 0;
}

struct Child {
  pid_t pid = 0;
  int out = -1;  // its stdout
};

Child spawn_pools(const Options& o, const std::string& url, int first, int count, int vanish_every) {
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
  ::fcntl(pipe_fds[0], F_SETPIPE_SZ, 1 << 20);
  std::vector<std::string> args = {"/proc/self/exe",  "--role",    "pools",
                                   "--url",           url,         "--first",
                                   std::to_string(first), "--count", std::to_string(count),
                                   "--workers-per-pool", std::to_string(o.workers), "--service-ms",
                                   fmt::format("{}", o.service_ms), "--vanish-every", std::to_string(vanish_every), "--connect-wave",
                                   std::to_string(o.connect_wave)};
  if (!o.misbehave.empty()) args.insert(args.end(), {"--misbehave", o.misbehave});
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
  Child c;
  const int rc = ::posix_spawn(&c.pid, "/proc/self/exe", &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(pipe_fds[1]);
  if (rc != 0) throw std::runtime_error(std::string("posix_spawn failed: ") + std::strerror(rc));
  c.out = pipe_fds[0];
  return c;
}

// What the interchange thread reports, and what the driver thread waits on.
struct Shared {
  std::mutex mutex;
  std::condition_variable changed;
  long registered = 0;
  long refused = 0;
  long cancelled = 0;
  long ok = 0;             // first completions
  long duplicates = 0;     // a task completed twice: a failure
  long manager_lost = 0;
  std::vector<std::int64_t> submitted_ns;  // by task id (run phase)
  std::vector<std::uint32_t> latency_us;
  std::vector<std::uint8_t> done;
  std::unordered_map<std::string, std::int64_t> lost_at_ns;  // identity -> when the loss was noticed
  Clock::time_point last_completion{};
  interchange::Interchange* ix = nullptr;
};

int run_driver(const Options& o) {
  const rlim_t fd_limit = raise_fd_limit();
  std::string json;
  auto field = [&](const char* name, auto value) { json += fmt::format("{}\"{}\": {}", json.empty() ? "{" : ", ", name, value); };

  // ---- dispatcher: bytes per pool and per queued task of the state machine alone.
  double dispatcher_bytes_per_pool = 0, dispatcher_bytes_per_queued_task = 0;
  {
    const long queued = std::min<long>(o.tasks, 1'000'000);
    const long before = heap_bytes();
    auto d = std::make_unique<interchange::Dispatcher>(interchange::DispatcherConfig{});
    const auto now = interchange::Clock::now();
    for (int i = 0; i < o.pools; ++i) {
      protocol::Register r;
      r.pool_id = "p" + std::to_string(i);
      r.block_id = "0";
      r.hostname = "sim";
      r.worker_count = o.workers;
      d->on_message(r.pool_id, r, now);
      d->take_outbox();  // nothing queued: only REGISTERED messages, dropped
    }
    const long with_pools = heap_bytes();
    dispatcher_bytes_per_pool = static_cast<double>(with_pools - before) / o.pools;
    // Queued with every pool held, so that they stay in the queue.
    for (int i = 0; i < o.pools; ++i) d->hold("p" + std::to_string(i), true);
    for (long id = 0; id < queued; ++id) {
      interchange::DispatchTask t;
      t.task_id = static_cast<std::uint64_t>(id);
      t.kind = protocol::kKindShell;
      t.payload = "payload";
      d->submit(std::move(t), now);
    }
    d->take_outbox();
    dispatcher_bytes_per_queued_task = static_cast<double>(heap_bytes() - with_pools) / queued;
  }
  malloc_trim(0);

  Shared s;
  s.submitted_ns.assign(static_cast<std::size_t>(o.tasks), 0);
  s.latency_us.assign(static_cast<std::size_t>(o.tasks), 0);
  s.done.assign(static_cast<std::size_t>(o.tasks), 0);
  bool run_phase = false;  // under s.mutex: completions count toward the run

  interchange::InterchangeConfig cfg;
  cfg.port_min = 56000;
  cfg.port_max = 56999;
  cfg.dispatcher.heartbeat_period = o.heartbeat_period;
  cfg.dispatcher.heartbeat_threshold = o.heartbeat_threshold;
  cfg.dispatcher.short_task_prefetch = o.short_task_prefetch;
  interchange::Interchange ix(
      cfg,
      [&](std::vector<interchange::Completed>&& done) {
        const auto now = Clock::now();
        std::vector<interchange::DispatchTask> retry;
        {
          std::lock_guard lock(s.mutex);
          for (auto& c : done) {
            if (c.status == protocol::kStatusCancelled) {
              ++s.cancelled;
              continue;
            }
            if (!run_phase || c.task_id >= s.done.size()) continue;
            if (c.manager_lost) {
              ++s.manager_lost;
              interchange::DispatchTask t;
              t.task_id = c.task_id;
              t.kind = protocol::kKindShell;
              t.payload = "payload";
              retry.push_back(std::move(t));
              continue;
            }
            if (s.done[c.task_id]++) {
              ++s.duplicates;
              continue;
            }
            ++s.ok;
            s.latency_us[c.task_id] = static_cast<std::uint32_t>(
                std::min<std::int64_t>((ns_since_boot(now) - s.submitted_ns[c.task_id]) / 1000, UINT32_MAX));
            s.last_completion = now;
          }
        }
        if (!retry.empty()) s.ix->submit(std::move(retry));
        s.changed.notify_all();
      },
      [&](const interchange::PoolEvent& e) {
        {
          std::lock_guard lock(s.mutex);
          if (e.kind == interchange::PoolEvent::registered) ++s.registered;
          if (e.kind == interchange::PoolEvent::refused) ++s.refused;
          if (e.kind == interchange::PoolEvent::lost) s.lost_at_ns[e.identity] = ns_since_boot(Clock::now());
        }
        s.changed.notify_all();
      });
  s.ix = &ix;
  ix.outstanding();  // a round trip: the interchange thread has named itself
  const pid_t ix_tid = thread_named("pv-interchange");
  if (ix_tid == 0) {
    std::fprintf(stderr, "interchange_scale: no pv-interchange thread\n");
    return 1;
  }
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.timeout_s));
  auto wait_for = [&](const char* what, auto condition) {
    std::unique_lock lock(s.mutex);
    if (!s.changed.wait_until(lock, deadline, condition)) {
      std::fprintf(stderr, "interchange_scale: timed out waiting for %s (registered %ld, ok %ld of %ld, lost %ld)\n", what,
                   s.registered, s.ok, o.tasks, s.manager_lost);
      return false;
    }
    return true;
  };

  // ---- queue: the driver's memory per queued task, then the cost of cancelling them.
  const long queued = std::min<long>(o.tasks, 1'000'000);
  const long rss_empty = rss_bytes();
  {
    std::vector<interchange::DispatchTask> batch;
    // Reserved: a vector doubling to 160 MB frees chunks that raise glibc's dynamic mmap
    // threshold (to 21 MB), after which freed memory stays resident; that cost 84 bytes per
    // queued task of RSS that were this benchmark's, not the interchange's.
    batch.reserve(static_cast<std::size_t>(queued));
    for (long id = 0; id < queued; ++id) {
      interchange::DispatchTask t;
      t.task_id = static_cast<std::uint64_t>(id) + (1ULL << 40);  // not the run's ids
      t.kind = protocol::kKindShell;
      t.payload = "payload";
      batch.push_back(std::move(t));
    }
    ix.submit(std::move(batch));
  }
  // Twice: the submitted batch is freed after the round of commands that queued it.
  if (ix.outstanding() != static_cast<std::size_t>(queued) || ix.outstanding() != static_cast<std::size_t>(queued)) {
    std::fprintf(stderr, "interchange_scale: the queue does not hold the tasks\n");
    return 1;
  }
  const double rss_per_queued_task = static_cast<double>(rss_bytes() - rss_empty) / queued;
  const double cancel_cpu0 = thread_cpu_s(ix_tid);
  {
    std::vector<std::uint64_t> ids;
    for (long id = 0; id < queued; ++id) ids.push_back(static_cast<std::uint64_t>(id) + (1ULL << 40));
    ix.cancel(std::move(ids));
  }
  if (!wait_for("cancellations", [&] { return s.cancelled == queued; })) return 1;
  const double cancel_cpu_per_task_us = (thread_cpu_s(ix_tid) - cancel_cpu0) * 1e6 / queued;
  malloc_trim(0);

  // ---- register: the pools' processes start, every pool registers.
  int lose = o.lose_pools >= 0 ? o.lose_pools : (o.misbehave == "vanish" ? std::max(1, o.pools / 10) : 0);
  lose = std::min(lose, o.pools);
  const int vanish_every = lose > 0 ? o.pools / lose : 0;
  const long rss_before_pools = rss_bytes();
  const long heap_before_pools = heap_bytes();
  const auto register_start = Clock::now();
  std::vector<Child> children;
  for (int first = 0; first < o.pools; first += o.pools_per_process)
    children.push_back(spawn_pools(o, ix.url(), first, std::min(o.pools_per_process, o.pools - first), vanish_every));
  auto stop_children = [&] {
    for (auto& c : children) ::kill(c.pid, SIGTERM);
    for (auto& c : children) ::waitpid(c.pid, nullptr, 0);
  };
  if (!wait_for("registrations", [&] { return s.registered >= o.pools; })) {
    stop_children();
    return 1;
  }
  const double register_s = std::chrono::duration<double>(Clock::now() - register_start).count();
  std::size_t lost_before_run = 0;
  {
    std::lock_guard lock(s.mutex);
    lost_before_run = s.lost_at_ns.size();
  }
  const double rss_per_pool = static_cast<double>(rss_bytes() - rss_before_pools) / o.pools;
  const double heap_per_pool = static_cast<double>(heap_bytes() - heap_before_pools) / o.pools;
  const long kernel_bytes = kernel_socket_bytes(ix.port());
  const double kernel_per_pool = kernel_bytes < 0 ? -1.0 : static_cast<double>(kernel_bytes) / o.pools;

  // ---- idle: heartbeats only.
  double heartbeat_cpu_fraction = -1, heartbeat_cpu_us_per_pool_period = -1;
  if (o.idle_s > 0) {
    const double cpu0 = thread_cpu_s(ix_tid);
    std::this_thread::sleep_for(std::chrono::duration<double>(o.idle_s));  // a benchmark: waiting is the point
    const double cpu = thread_cpu_s(ix_tid) - cpu0;
    heartbeat_cpu_fraction = cpu / o.idle_s;
    heartbeat_cpu_us_per_pool_period = cpu * 1e6 / (o.pools * o.idle_s / o.heartbeat_period);
  }

  // ---- run.
  const double cpu0 = thread_cpu_s(ix_tid);
  const auto run_start = Clock::now();
  {
    std::lock_guard lock(s.mutex);
    run_phase = true;
  }
  constexpr long kChunk = 10'000;
  for (long first = 0; first < o.tasks; first += kChunk) {
    std::vector<interchange::DispatchTask> batch;
    const long last = std::min(o.tasks, first + kChunk);
    const std::int64_t now = ns_since_boot(Clock::now());
    for (long id = first; id < last; ++id) {
      s.submitted_ns[static_cast<std::size_t>(id)] = now;  // before the interchange can complete it
      interchange::DispatchTask t;
      t.task_id = static_cast<std::uint64_t>(id);
      t.kind = protocol::kKindShell;
      t.payload = "payload";
      batch.push_back(std::move(t));
    }
    ix.submit(std::move(batch));
  }
  const bool finished = wait_for("the tasks", [&] { return s.ok == o.tasks; });
  const double run_cpu = thread_cpu_s(ix_tid) - cpu0;
  ix.stop();
  stop_children();
  if (!finished) return 1;

  // When pools vanished: the time from each one's vanishing to the interchange noticing.
  double notice_lost_max_s = -1;
  int vanished = 0;
  for (auto& c : children) {
    std::string text;
    char buf[65536];
    ::fcntl(c.out, F_SETFL, O_NONBLOCK);
    for (ssize_t n; (n = ::read(c.out, buf, sizeof buf)) > 0;) text.append(buf, static_cast<std::size_t>(n));
    ::close(c.out);
    char identity[128];
    long long at = 0;
    for (std::size_t pos = 0; pos < text.size();) {
      const std::size_t end = text.find('\n', pos);
      const std::string line = text.substr(pos, end - pos);
      pos = end == std::string::npos ? text.size() : end + 1;
      if (std::sscanf(line.c_str(), "vanished %127s %lld", identity, &at) != 2) continue;
      ++vanished;
      std::lock_guard lock(s.mutex);
      if (auto l = s.lost_at_ns.find(identity); l != s.lost_at_ns.end())
        notice_lost_max_s = std::max(notice_lost_max_s, static_cast<double>(l->second - at) * 1e-9);
    }
  }

  const double elapsed = std::chrono::duration<double>(s.last_completion - run_start).count();
  std::vector<std::uint32_t> lat = s.latency_us;
  auto percentile = [&](double q) {
    auto k = lat.begin() + static_cast<long>(q * static_cast<double>(lat.size() - 1));
    std::nth_element(lat.begin(), k, lat.end());
    return *k;
  };
  field("pools", o.pools);
  field("workers_per_pool", o.workers);
  field("workers", static_cast<long>(o.pools) * o.workers);
  field("tasks", o.tasks);
  field("service_ms", o.service_ms);
  field("misbehave", fmt::format("\"{}\"", o.misbehave));
  field("short_task_prefetch", o.short_task_prefetch);
  field("processes", children.size());
  field("fd_limit", static_cast<unsigned long>(fd_limit));
  field("tasks_per_s", fmt::format("{:.1f}", static_cast<double>(o.tasks) / elapsed));
  field("latency_p50_us", percentile(0.5));
  field("latency_p99_us", percentile(0.99));
  field("cpu_per_task_us", fmt::format("{:.3f}", run_cpu * 1e6 / static_cast<double>(o.tasks)));
  field("register_s", fmt::format("{:.3f}", register_s));
  field("driver_rss_per_pool_bytes", fmt::format("{:.0f}", rss_per_pool));
  // The driver's heap per pool is ours (the dispatcher's state; the shell's maps add about 250
  // bytes, counted with ZeroMQ's) and ZeroMQ's (its pipes, encoder and decoder buffers, ...).
  field("driver_heap_per_pool_bytes", fmt::format("{:.0f}", heap_per_pool));
  field("zeromq_bytes_per_pool", fmt::format("{:.0f}", heap_per_pool - dispatcher_bytes_per_pool));
  field("kernel_socket_bytes_per_pool", fmt::format("{:.0f}", kernel_per_pool));
  field("driver_rss_per_worker_bytes", fmt::format("{:.1f}", rss_per_pool / o.workers));
  field("driver_rss_per_queued_task_bytes", fmt::format("{:.1f}", rss_per_queued_task));
  field("dispatcher_bytes_per_pool", fmt::format("{:.0f}", dispatcher_bytes_per_pool));
  field("dispatcher_bytes_per_queued_task", fmt::format("{:.1f}", dispatcher_bytes_per_queued_task));
  field("cancel_cpu_per_task_us", fmt::format("{:.3f}", cancel_cpu_per_task_us));
  field("heartbeat_period_s", o.heartbeat_period);
  field("heartbeat_cpu_fraction", fmt::format("{:.5f}", heartbeat_cpu_fraction));
  field("heartbeat_cpu_us_per_pool_period", fmt::format("{:.2f}", heartbeat_cpu_us_per_pool_period));
  // The same cost at the default heartbeat_period (30 s), as a fraction of one core.
  field("heartbeat_cpu_fraction_at_30s",
        fmt::format("{:.5f}", heartbeat_cpu_us_per_pool_period < 0 ? -1.0 : heartbeat_cpu_us_per_pool_period * o.pools / 30 / 1e6));
  field("pools_vanished", vanished);
  field("pools_lost", s.lost_at_ns.size());
  field("pools_lost_before_run", lost_before_run);
  field("manager_lost", s.manager_lost);
  field("notice_lost_max_s", fmt::format("{:.3f}", notice_lost_max_s));
  field("refused", s.refused);
  field("duplicates", s.duplicates);
  json += '}';
  if (o.json) {
    std::printf("%s\n", json.c_str());
  } else {
    std::printf("%d pools x %d workers, %ld tasks of %g ms: %s\n", o.pools, o.workers, o.tasks, o.service_ms, json.c_str());
  }
  if (s.duplicates > 0 || (lose > 0 && vanished == 0)) {
    std::fprintf(stderr, "interchange_scale: %ld tasks completed twice, %d pools vanished\n", s.duplicates, vanished);
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  if (o.role == "pools") {
    raise_fd_limit();
    return PoolProcess(o).run();
  }
  return run_driver(o);
}
