// Rank 0 of pervade-exex-pool: see exex_bridge.hpp.
//
// The bridge thread cannot sleep in MPI (nothing wakes a thread blocked in MPI when a socket
// becomes readable, and a blocking call on a dead peer would end the process), so it polls:
// ppoll() over the sockets, for as long as Nap (exex_link.hpp) says.
#include "pool/exex_bridge.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <ctime>
#include <stdexcept>

#include <fmt/format.h>

namespace pervade::pool::exex {

namespace {

constexpr std::size_t kChunk = 1 << 20;           // bytes read from a worker's stream at once
constexpr int kSocketBuffer = 4 << 20;            // as the pool's own worker sockets
constexpr std::size_t kMessagesPerRound = 256;    // MPI messages handled before looking at the sockets

void notify(int fd) {
  if (fd < 0) return;
  const std::uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(fd, &one, sizeof one);
}

}  // namespace

void log_line(int rank, const std::string& text) {
  char stamp[32];
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  ::localtime_r(&t, &tm);
  std::strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &tm);
  std::fprintf(stderr, "%s pervade-exex-pool[%d] rank %d: %s\n", stamp, static_cast<int>(::getpid()), rank,
               text.c_str());
  std::fflush(stderr);
}

Bridge::Bridge(RankLink& link, Liveness liveness) : link_(link), liveness_(liveness) {
  const int ranks = link_.size();
  std::vector<std::optional<RemoteNode>> hellos(static_cast<std::size_t>(ranks));
  int missing = ranks - 1;
  const auto deadline = Clock::now() + liveness_.threshold;
  while (missing > 0) {
    auto got = link_.receive();
    if (!got) {
      if (Clock::now() > deadline)
        throw std::runtime_error(fmt::format("{} of the block's {} ranks did not say hello within {} s", missing,
                                             ranks, std::chrono::duration<double>(liveness_.threshold).count()));
      ::usleep(1000);
      continue;
    }
    auto m = decode(got->second);
    if (!m || m->type != Type::hello || m->strings.size() != 1 || hellos[static_cast<std::size_t>(got->first)])
      throw std::runtime_error(fmt::format("rank {} sent something else than hello first", got->first));
    hellos[static_cast<std::size_t>(got->first)] =
        RemoteNode{got->first, m->strings[0], static_cast<int>(m->a), static_cast<int>(m->b),
                   static_cast<std::uint64_t>(m->c)};
    --missing;
  }
  first_slot_.assign(static_cast<std::size_t>(ranks), 0);
  for (int r = 1; r < ranks; ++r) {
    const RemoteNode& n = *hellos[static_cast<std::size_t>(r)];
    first_slot_[static_cast<std::size_t>(r)] = static_cast<int>(slots_.size());
    for (int i = 0; i < n.workers; ++i) {
      Slot s;
      s.rank = r;
      s.index = static_cast<std::uint32_t>(i);
      slots_.push_back(std::move(s));
    }
    nodes_.push_back(n);
  }
  exited_.resize(slots_.size());
  slot_lost_.assign(slots_.size(), false);
  const auto now = Clock::now();
  last_heard_.assign(static_cast<std::size_t>(ranks), now);
  last_sent_.assign(static_cast<std::size_t>(ranks), now);
  rank_lost_.assign(static_cast<std::size_t>(ranks), false);
  batches_.resize(static_cast<std::size_t>(ranks));
  bridge_wake_ = detail::Fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!bridge_wake_.valid()) throw std::runtime_error("eventfd failed");
  thread_ = std::thread([this] { run(); });
}

Bridge::~Bridge() {
  if (thread_.joinable()) stop(std::chrono::seconds(0));
}

std::string Bridge::where(int slot) const {
  const Slot& s = slots_[static_cast<std::size_t>(slot)];
  return fmt::format("rank {} on {}", s.rank, nodes_[static_cast<std::size_t>(s.rank - 1)].host);
}

detail::Fd Bridge::start(int slot, std::vector<std::string> argv, std::vector<std::string> env, std::string* error) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) != 0) {
    *error = fmt::format("socketpair: {}", std::strerror(errno));
    return {};
  }
  for (int fd : sv) ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &kSocketBuffer, sizeof kSocketBuffer);
  Command c{Command::start, slot, detail::Fd(sv[1]), {}};
  c.message.type = Type::start;
  c.message.slot = slots_[static_cast<std::size_t>(slot)].index;
  c.message.b = static_cast<std::int64_t>(env.size());
  c.message.strings = std::move(argv);
  c.message.strings.insert(c.message.strings.end(), std::make_move_iterator(env.begin()),
                           std::make_move_iterator(env.end()));
  {
    std::lock_guard lock(mu_);
    exited_[static_cast<std::size_t>(slot)].reset();
    commands_.push_back(std::move(c));
  }
  notify(bridge_wake_.get());
  return detail::Fd(sv[0]);
}

void Bridge::signal(int slot, int sig, bool stop_commands) {
  Command c{Command::signal, slot, {}, {}};
  c.message.type = Type::signal;
  c.message.slot = slots_[static_cast<std::size_t>(slot)].index;
  c.message.a = sig;
  c.message.b = stop_commands ? 1 : 0;
  {
    std::lock_guard lock(mu_);
    commands_.push_back(std::move(c));
  }
  notify(bridge_wake_.get());
}

std::optional<std::string> Bridge::exited(int slot) {
  std::lock_guard lock(mu_);
  return exited_[static_cast<std::size_t>(slot)];
}

bool Bridge::lost(int slot) {
  std::lock_guard lock(mu_);
  return slot_lost_[static_cast<std::size_t>(slot)];
}

bool Bridge::stop(Clock::duration timeout) {
  {
    std::unique_lock lock(mu_);
    stopping_ = true;
    notify(bridge_wake_.get());
    stopped_cv_.wait_for(lock, timeout, [&] { return stopped_ranks_ + lost_ranks_ >= link_.size() - 1; });
    finalize_ = true;  // the bridge thread's cue to end
  }
  notify(bridge_wake_.get());
  if (thread_.joinable()) thread_.join();
  std::lock_guard lock(mu_);
  return lost_ranks_ == 0 && stopped_ranks_ == link_.size() - 1;
}

void Bridge::send(int rank, const Message& m) {
  flush(rank);  // the workers' bytes read before it go first
  link_.send(rank, encode(m));
  last_sent_[static_cast<std::size_t>(rank)] = Clock::now();
}

void Bridge::flush(int rank) {
  DataBatch& b = batches_[static_cast<std::size_t>(rank)];
  if (b.empty()) return;
  link_.send(rank, b.take());
  last_sent_[static_cast<std::size_t>(rank)] = Clock::now();
}

void Bridge::wake_pool() { notify(wake_fd_); }

void Bridge::apply(Command& c) {
  Slot& s = slots_[static_cast<std::size_t>(c.slot)];
  if (c.kind == Command::start) {
    s.fd = std::move(c.fd);
    s.out.clear();
    s.out_offset = 0;
    s.ending.reset();
  }
  if (rank_lost_[static_cast<std::size_t>(s.rank)]) {
    if (c.kind == Command::start) end_slot(c.slot, fmt::format("could not start: {} was lost", where(c.slot)));
    return;
  }
  send(s.rank, c.message);
}

void Bridge::end_slot(int slot, std::string how) {
  Slot& s = slots_[static_cast<std::size_t>(slot)];
  s.ending = std::move(how);
  if (s.fd.valid() && s.out_offset < s.out.size()) return;  // write_slot() ends it once the pool has everything
  s.fd.reset();  // the pool reads what is left, then end of file
  s.out.clear();
  s.out_offset = 0;
  {
    std::lock_guard lock(mu_);
    exited_[static_cast<std::size_t>(slot)] = std::move(*s.ending);
  }
  s.ending.reset();
  wake_pool();
}

void Bridge::write_slot(Slot& s) {
  while (s.fd.valid() && s.out_offset < s.out.size()) {
    const ssize_t n = ::send(s.fd.get(), s.out.data() + s.out_offset, s.out.size() - s.out_offset, MSG_NOSIGNAL);
    if (n > 0) {
      s.out_offset += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    s.fd.reset();  // the pool closed its end (it killed the worker): nothing more to deliver
  }
  s.out.clear();
  s.out_offset = 0;
  if (s.ending) end_slot(static_cast<int>(&s - slots_.data()), std::move(*s.ending));
}

bool Bridge::read_slot(int slot) {
  Slot& s = slots_[static_cast<std::size_t>(slot)];
  if (!s.fd.valid()) return false;
  static thread_local std::string buffer(kChunk, '\0');  // read here, then copied once into the batch
  const ssize_t n = ::recv(s.fd.get(), buffer.data(), kChunk, MSG_DONTWAIT);
  if (n > 0) {
    batches_[static_cast<std::size_t>(s.rank)].append(s.index, {buffer.data(), static_cast<std::size_t>(n)});
    return true;
  }
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return false;
  // The pool closed its end: it killed the worker (a signal follows) or is stopping. Its exit
  // still comes from its rank.
  s.fd.reset();
  s.out.clear();
  s.out_offset = 0;
  return false;
}

void Bridge::on_message(int from, std::string bytes) {
  const auto m = decode(bytes);
  if (from < 1 || from >= link_.size() || rank_lost_[static_cast<std::size_t>(from)]) return;
  last_heard_[static_cast<std::size_t>(from)] = Clock::now();
  if (!m) {
    log_line(0, fmt::format("ignoring a malformed message ({} bytes) from rank {}", bytes.size(), from));
    return;
  }
  const auto& node = nodes_[static_cast<std::size_t>(from - 1)];
  const bool has_slot = m->slot < static_cast<std::uint32_t>(node.workers);
  const int slot = first_slot_[static_cast<std::size_t>(from)] + static_cast<int>(m->slot);
  switch (m->type) {
    case Type::data: {
      std::string_view rest = m->data, piece;
      std::uint32_t index = 0;
      bool malformed = false;
      while (next_piece(&rest, &index, &piece, &malformed)) {
        if (index >= static_cast<std::uint32_t>(node.workers)) continue;
        Slot& s = slots_[static_cast<std::size_t>(first_slot_[static_cast<std::size_t>(from)] + static_cast<int>(index))];
        if (!s.fd.valid()) continue;
        s.out.append(piece);
        write_slot(s);
      }
      if (malformed) log_line(0, fmt::format("ignoring the rest of a malformed data message from rank {}", from));
      break;
    }
    case Type::exited:
      if (has_slot && m->strings.size() == 1) end_slot(slot, m->strings[0]);
      break;
    case Type::stopped: {
      std::lock_guard lock(mu_);
      ++stopped_ranks_;
      stopped_cv_.notify_all();
      break;
    }
    default:  // alive, started
      break;
  }
}

void Bridge::lose_rank(int rank, const std::string& why) {
  rank_lost_[static_cast<std::size_t>(rank)] = true;
  batches_[static_cast<std::size_t>(rank)].take();
  link_.forget(rank);
  log_line(0, fmt::format("rank {} on {} is lost: {}; its workers' tasks fail with WorkerLost, the other ranks go on",
                          rank, nodes_[static_cast<std::size_t>(rank - 1)].host, why));
  const int first = first_slot_[static_cast<std::size_t>(rank)];
  for (int i = 0; i < nodes_[static_cast<std::size_t>(rank - 1)].workers; ++i) {
    {
      std::lock_guard lock(mu_);
      slot_lost_[static_cast<std::size_t>(first + i)] = true;
      if (exited_[static_cast<std::size_t>(first + i)]) continue;  // not running
    }
    end_slot(first + i, fmt::format("was lost with its rank: {}", why));
  }
  std::lock_guard lock(mu_);
  ++lost_ranks_;
  stopped_cv_.notify_all();  // stop() waits for the ranks still there
}

void Bridge::run() {
  std::vector<pollfd> fds;
  std::vector<int> fd_slot;
  Nap nap;
  bool stop_sent = false;
  auto last_round = Clock::now();
  for (;;) {
    bool busy = false;
    std::deque<Command> commands;
    bool stopping = false, finish = false;
    {
      std::lock_guard lock(mu_);
      commands.swap(commands_);
      stopping = stopping_;
      finish = finalize_;
    }
    for (Command& c : commands) apply(c);
    if (finish) return;
    if (stopping && !stop_sent) {
      stop_sent = true;
      bool any_lost = false;
      for (std::size_t r = 1; r < rank_lost_.size(); ++r) any_lost = any_lost || rank_lost_[r];
      Message m;
      m.type = Type::stop;
      m.a = any_lost ? 0 : 1;  // MPI_Finalize only when every rank is there to take part
      for (int r = 1; r < link_.size(); ++r)
        if (!rank_lost_[static_cast<std::size_t>(r)]) send(r, m);
    }
    std::size_t received = 0;
    for (; received < kMessagesPerRound; ++received) {
      auto got = link_.receive();
      if (!got) break;
      busy = true;
      on_message(got->first, std::move(got->second));
    }
    for (std::size_t k = 1; k < fds.size(); ++k) {
      Slot& s = slots_[static_cast<std::size_t>(fd_slot[k])];
      if (!s.fd.valid() || s.fd.get() != fds[k].fd) continue;  // restarted since the poll
      if (fds[k].revents & POLLOUT) write_slot(s);
      if (fds[k].revents & (POLLIN | POLLHUP | POLLERR)) busy = read_slot(fd_slot[k]) || busy;
    }
    for (int r = 1; r < link_.size(); ++r)  // one message per rank for all its workers' bytes
      if (!rank_lost_[static_cast<std::size_t>(r)]) flush(r);
    link_.progress();
    const auto now = Clock::now();
    // Silences are judged only when this loop ran on time and read all that had arrived: a
    // thread that was not scheduled for a while must not take its own delay for its peers'.
    const bool on_time = received < kMessagesPerRound && now - last_round < liveness_.period;
    last_round = now;
    for (int r = 1; r < link_.size() && !stop_sent; ++r) {  // stopping: stop() has its own deadline
      const auto i = static_cast<std::size_t>(r);
      if (rank_lost_[i]) continue;
      if (on_time && now - last_heard_[i] > liveness_.threshold) {
        lose_rank(r, fmt::format("no message from it for {} s",
                                 std::chrono::duration<double>(liveness_.threshold).count()));
        continue;
      }
      if (now - last_sent_[i] >= liveness_.period) send(r, Message{});
    }

    fds.clear();
    fd_slot.clear();
    fds.push_back({bridge_wake_.get(), POLLIN, 0});
    fd_slot.push_back(-1);
    for (std::size_t i = 0; i < slots_.size(); ++i) {
      const Slot& s = slots_[i];
      if (!s.fd.valid()) continue;
      fds.push_back({s.fd.get(), static_cast<short>(POLLIN | (s.out_offset < s.out.size() ? POLLOUT : 0)), 0});
      fd_slot.push_back(static_cast<int>(i));
    }
    const timespec ts = nap.next(busy);
    if (::ppoll(fds.data(), fds.size(), &ts, nullptr) > 0 && fds[0].revents) {
      std::uint64_t v;
      [[maybe_unused]] ssize_t n = ::read(bridge_wake_.get(), &v, sizeof v);
    }
  }
}

}  // namespace pervade::pool::exex
