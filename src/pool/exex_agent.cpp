// A rank other than 0 of pervade-exex-pool: see exex_agent.hpp.
//
// Workers are started with fork/exec rather than posix_spawn so that each gets
// PR_SET_PDEATHSIG: if this rank is killed (a lost node, as the tests do it), its workers die
// with it instead of running on unseen. As in pervade-pool, each worker leads its own process
// group and is detected as dead with waitid(WNOWAIT), its group killed while the zombie still
// holds the group id, and only then reaped.
#include "pool/exex_agent.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>

#include <fmt/format.h>

#include "pool/resources.hpp"
#include "util/process.hpp"

extern char** environ;

namespace pervade::pool::exex {

namespace {

using detail::Fd;

constexpr std::size_t kChunk = 1 << 20;
constexpr int kSocketBuffer = 4 << 20;
constexpr int kMessagesPerRound = 256;  // MPI messages handled before looking at the sockets
constexpr auto kKillGrace = std::chrono::seconds(2);         // SIGTERM -> SIGKILL when stopping
constexpr auto kCommandStopGrace = std::chrono::seconds(3);  // as pervade-pool's

struct Worker {
  pid_t pid = -1;
  Fd fd;
  std::string out;
  std::size_t out_offset = 0;
};

class Agent {
 public:
  Agent(RankLink& link, const PoolOptions& o, Liveness liveness, int signal_fd)
      : link_(link), o_(o), liveness_(liveness), signal_fd_(signal_fd) {}

  AgentExit run() {
    hello();
    Nap nap;
    std::vector<pollfd> fds;
    std::vector<int> fd_worker;
    last_heard_ = last_sent_ = Clock::now();
    auto last_round = last_heard_;
    for (;;) {
      bool busy = false;
      int received = 0;
      for (; received < kMessagesPerRound && !exit_; ++received) {
        auto got = link_.receive();
        if (!got) break;
        busy = true;
        if (got->first == 0) on_message(got->second);
      }
      if (exit_) break;
      for (std::size_t k = 1; k < fds.size(); ++k) {
        Worker& w = workers_[static_cast<std::size_t>(fd_worker[k])];
        if (!w.fd.valid() || w.fd.get() != fds[k].fd) continue;
        if (fds[k].revents & POLLOUT) write(w);
        if (fds[k].revents & (POLLIN | POLLHUP | POLLERR)) busy = read(fd_worker[k]) || busy;
      }
      flush();  // one message for all the workers' bytes of this round
      if (!fds.empty() && fds[0].revents) {
        if (!read_signals()) break;
        reap();
      }
      kill_stopped_commands(Clock::now());
      link_.progress();
      const auto now = Clock::now();
      // As rank 0's bridge: judged only when this loop ran on time and read all that had arrived.
      const bool on_time = received < kMessagesPerRound && now - last_round < liveness_.period;
      last_round = now;
      if (on_time && now - last_heard_ > liveness_.threshold) {
        log(fmt::format("no message from rank 0 for {} s: stopping",
                        std::chrono::duration<double>(liveness_.threshold).count()));
        exit_ = AgentExit{kExitOk, false};
        break;
      }
      if (now - last_sent_ >= liveness_.period) send(Message{});

      fds.clear();
      fd_worker.clear();
      fds.push_back({signal_fd_, POLLIN, 0});
      fd_worker.push_back(-1);
      for (std::size_t i = 0; i < workers_.size(); ++i) {
        const Worker& w = workers_[i];
        if (!w.fd.valid()) continue;
        fds.push_back({w.fd.get(), static_cast<short>(POLLIN | (w.out_offset < w.out.size() ? POLLOUT : 0)), 0});
        fd_worker.push_back(static_cast<int>(i));
      }
      const timespec ts = nap.next(busy);
      ::ppoll(fds.data(), fds.size(), &ts, nullptr);
    }
    stop_workers();
    if (stop_asked_) {  // rank 0 waits for this before it ends
      Message m;
      m.type = Type::stopped;
      send(m);
      const auto deadline = Clock::now() + std::chrono::seconds(5);
      while (link_.progress() > 0 && Clock::now() < deadline) ::usleep(1000);
    }
    return *exit_;
  }

 private:
  void log(const std::string& text) { log_line(link_.rank(), text); }

  void send(const Message& m) {
    flush();  // the workers' bytes read before it go first
    link_.send(0, encode(m));
    last_sent_ = Clock::now();
  }

  void flush() {
    if (batch_.empty()) return;
    link_.send(0, batch_.take());
    last_sent_ = Clock::now();
  }

  // The workers this node runs, planned as pervade-pool plans its own.
  void hello() {
    std::string error;
    const std::optional<NodeResources> node = read_node_resources(&error);
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    Message m;
    m.type = Type::hello;
    m.strings = {host};
    if (node) {
      WorkerRequest request;
      request.workers = o_.workers;
      request.max_workers = o_.max_workers;
      request.cores_per_worker = o_.cores_per_worker;
      request.mem_per_worker = o_.mem_per_worker;
      const WorkerPlan plan = plan_workers(request, CpuAffinity{}, *node);
      if (plan.error.empty()) {
        m.a = plan.count;
        m.b = static_cast<std::int64_t>(node->cpus.size());
        m.c = static_cast<std::int64_t>(node->mem_available_gb.value_or(0) * 1024);
        log(fmt::format("{}: {}", host, plan.reason));
      } else {
        error = plan.error;
      }
    }
    if (!error.empty()) log(fmt::format("{}: no workers here: {}", host, error));
    workers_.resize(static_cast<std::size_t>(m.a));
    send(m);
  }

  void on_message(const std::string& bytes) {
    last_heard_ = Clock::now();
    const auto m = decode(bytes);
    if (!m) {
      log(fmt::format("ignoring a malformed message ({} bytes) from rank 0", bytes.size()));
      return;
    }
    if (m->type == Type::stop) {
      stop_asked_ = true;
      exit_ = AgentExit{kExitOk, m->a == 1};
      return;
    }
    if (m->type == Type::alive) return;
    if (m->type == Type::data) {
      std::string_view rest = m->data, piece;
      std::uint32_t index = 0;
      bool malformed = false;
      while (next_piece(&rest, &index, &piece, &malformed)) {
        if (index >= workers_.size() || !workers_[index].fd.valid()) continue;
        workers_[index].out.append(piece);
        write(workers_[index]);
      }
      if (malformed) log("ignoring the rest of a malformed data message from rank 0");
      return;
    }
    if (m->slot >= workers_.size()) return;
    Worker& w = workers_[m->slot];
    switch (m->type) {
      case Type::start:
        start(m->slot, *m);
        break;
      case Type::signal:
        if (w.pid > 0) signal_worker(w, static_cast<int>(m->a), m->b == 1);
        break;
      default:
        break;
    }
  }

  void start(std::uint32_t slot, const Message& m) {
    Worker& w = workers_[slot];
    if (w.pid > 0) {  // rank 0 restarts a slot only after its exit: a leftover would be a bug there
      signal_worker(w, SIGKILL, true);
      reap_one(slot, /*report=*/false);
    }
    const auto vars = static_cast<std::size_t>(m.b);
    std::string error;
    if (m.strings.size() <= vars || !spawn(w, {m.strings.begin(), m.strings.end() - static_cast<std::ptrdiff_t>(vars)},
                                           {m.strings.end() - static_cast<std::ptrdiff_t>(vars), m.strings.end()},
                                           &error)) {
      Message e;
      e.type = Type::exited;
      e.slot = slot;
      e.strings = {fmt::format("could not be started: {}", error.empty() ? "bad start message" : error)};
      send(e);
      return;
    }
    Message s;
    s.type = Type::started;
    s.slot = slot;
    s.a = w.pid;
    send(s);
  }

  bool spawn(Worker& w, std::vector<std::string> args, const std::vector<std::string>& vars, std::string* error) {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
      *error = fmt::format("socketpair: {}", std::strerror(errno));
      return false;
    }
    Fd ours(sv[0]), theirs(sv[1]);
    for (int fd : sv) ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &kSocketBuffer, sizeof kSocketBuffer);
    if (theirs.get() < 4) theirs = Fd(::fcntl(theirs.get(), F_DUPFD_CLOEXEC, 4));  // dup2 to 3 must change it
    ::fcntl(ours.get(), F_SETFL, ::fcntl(ours.get(), F_GETFL) | O_NONBLOCK);
    // This rank's environment, with the pool's variables over it.
    std::vector<std::string> env;
    for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
      const std::string_view entry(*e);
      const std::string_view name = entry.substr(0, entry.find('='));
      bool overridden = false;
      for (const std::string& v : vars) overridden = overridden || std::string_view(v).substr(0, v.find('=')) == name;
      if (!overridden) env.emplace_back(entry);
    }
    env.insert(env.end(), vars.begin(), vars.end());
    std::vector<char*> argv, envp;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) {
      *error = fmt::format("fork: {}", std::strerror(errno));
      return false;
    }
    if (pid == 0) {  // only async-signal-safe calls until exec
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);  // the rank died already
      ::setpgid(0, 0);
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      ::signal(SIGPIPE, SIG_DFL);
      ::dup2(theirs.get(), 3);
      ::execvpe(argv[0], argv.data(), envp.data());
      ::_exit(127);
    }
    w.pid = pid;
    w.fd = std::move(ours);
    w.out.clear();
    w.out_offset = 0;
    return true;
  }

  void signal_worker(Worker& w, int sig, bool stop_commands) {
    if (stop_commands) {
      for (pid_t child : children_of(w.pid)) {
        if (::getpgid(child) != child) continue;
        ::kill(-child, SIGTERM);
        stopping_commands_.emplace_back(child, Clock::now() + kCommandStopGrace);
      }
    }
    ::kill(-w.pid, sig);
    if (sig == SIGKILL) ::kill(w.pid, SIGKILL);
  }

  void kill_stopped_commands(Clock::time_point now) {
    std::erase_if(stopping_commands_, [&](const std::pair<pid_t, Clock::time_point>& g) {
      if (g.second > now) return false;
      ::kill(-g.first, SIGKILL);
      return true;
    });
  }

  void write(Worker& w) {
    while (w.fd.valid() && w.out_offset < w.out.size()) {
      const ssize_t n = ::send(w.fd.get(), w.out.data() + w.out_offset, w.out.size() - w.out_offset, MSG_NOSIGNAL);
      if (n > 0) {
        w.out_offset += static_cast<std::size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      w.fd.reset();  // it closed its socket: it is exiting (reaped on SIGCHLD)
    }
    w.out.clear();
    w.out_offset = 0;
  }

  // Forwards what the worker wrote to rank 0; true if there was something.
  bool read(int index) {
    Worker& w = workers_[static_cast<std::size_t>(index)];
    static std::string buffer(kChunk, '\0');  // read here, then copied once into the batch
    const ssize_t n = ::recv(w.fd.get(), buffer.data(), kChunk, MSG_DONTWAIT);
    if (n > 0) {
      batch_.append(static_cast<std::uint32_t>(index), {buffer.data(), static_cast<std::size_t>(n)});
      return true;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return false;
    w.fd.reset();  // end of its stream: it is exiting
    return false;
  }

  // False when a stop signal arrived.
  bool read_signals() {
    signalfd_siginfo si;
    while (::read(signal_fd_, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
      const int sig = static_cast<int>(si.ssi_signo);
      if (sig == SIGCHLD) continue;
      log(fmt::format("received signal {} ({}); stopping the workers and exiting", sig, ::strsignal(sig)));
      exit_ = AgentExit{kExitSignalBase + sig, false};
    }
    return !exit_;
  }

  void reap() {
    for (std::size_t i = 0; i < workers_.size(); ++i)
      if (workers_[i].pid > 0 && detail::has_exited(workers_[i].pid)) reap_one(static_cast<std::uint32_t>(i), true);
  }

  // The worker has exited: what it wrote goes to rank 0 first, then how it ended.
  void reap_one(std::uint32_t slot, bool report) {
    Worker& w = workers_[slot];
    while (w.fd.valid() && read(static_cast<int>(slot))) {
    }
    w.fd.reset();
    ::kill(-w.pid, SIGKILL);  // the zombie leader still holds the group id
    int status = 0;
    pid_t r;
    do {
      r = ::waitpid(w.pid, &status, 0);
    } while (r < 0 && errno == EINTR);
    w.pid = -1;
    w.out.clear();
    w.out_offset = 0;
    if (!report) return;
    Message m;
    m.type = Type::exited;
    m.slot = slot;
    m.strings = {r < 0 ? "vanished (its exit status was lost)" : describe_wait_status(status)};
    send(m);
  }

  void stop_workers() {
    for (Worker& w : workers_)
      if (w.pid > 0) signal_worker(w, SIGTERM, true);
    const auto deadline = Clock::now() + kKillGrace;
    for (;;) {
      bool all = true;
      for (const Worker& w : workers_) all = all && (w.pid <= 0 || detail::has_exited(w.pid));
      if (all || Clock::now() >= deadline) break;
      ::usleep(10000);
    }
    for (std::size_t i = 0; i < workers_.size(); ++i)
      if (workers_[i].pid > 0) reap_one(static_cast<std::uint32_t>(i), false);
    kill_stopped_commands(Clock::time_point::max());
  }

  RankLink& link_;
  const PoolOptions& o_;
  Liveness liveness_;
  int signal_fd_;
  std::vector<Worker> workers_;
  DataBatch batch_;  // this round's bytes of the workers, for rank 0
  std::vector<std::pair<pid_t, Clock::time_point>> stopping_commands_;
  Clock::time_point last_heard_, last_sent_;
  bool stop_asked_ = false;
  std::optional<AgentExit> exit_;
};

}  // namespace

AgentExit run_agent(RankLink& link, const PoolOptions& options, Liveness liveness, int signal_fd) {
  return Agent(link, options, liveness, signal_fd).run();
}

}  // namespace pervade::pool::exex
