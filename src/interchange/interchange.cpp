// The interchange's ZeroMQ shell: one thread polls the ROUTER socket and an eventfd that
// other threads ring when they queue a command; everything else is the Dispatcher.
#include "interchange/interchange.hpp"

#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <filesystem>
#include <future>
#include <memory>
#include <mutex>
#include <string_view>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <vector>
#include <zmq.hpp>

#include "interchange/connection_guard.hpp"
#include "pervade/errors.hpp"
#include "util/private_files.hpp"
#include "util/thread_name.hpp"

namespace pervade::interchange {

namespace {
using Command = std::function<void(Dispatcher&, TimePoint)>;
// The work of one round of the loop is bounded, so that loss checks and heartbeats (tick())
// run within a fraction of a second however much is queued: at most kMessagesPerRound
// messages read from each socket (receive_all()), kCommandsPerRound commands run (submit() and
// cancel() post at most kTasksPerCommand tasks each) and kTasksPerRound tasks sent. A million
// tasks submitted at once were otherwise taken and sent in one round of seconds, and pools
// lost meanwhile were noticed that much late (BENCHMARKS.md, "One interchange, many pools").
// A round that leaves work behind is followed by another at once.
constexpr int kMessagesPerRound = 4096;
constexpr std::size_t kTasksPerCommand = 4096;
constexpr std::size_t kCommandsPerRound = 16;
constexpr std::size_t kTasksPerRound = kCommandsPerRound * kTasksPerCommand;
// A TCP peer that has not finished the ZMTP (and CurveZMQ) handshake after this long is
// disconnected (libzmq's default: 30 s). A pool needs a few round trips.
constexpr int kHandshakeTimeoutMs = 10000;
}  // namespace

struct Interchange::Impl {
  InterchangeConfig config;
  CompletedFn on_completed;
  EventFn on_event;
  UsageFn on_usage;
  zmq::context_t context{1};
  zmq::socket_t router{context, zmq::socket_type::router};
  // Pools on this host: the same ROUTER role on a Unix socket, without CurveZMQ (the
  // directory's mode is the access control); closed() when config.ipc_dir is empty.
  zmq::socket_t local;
  std::string ipc_dir;   // the 0700 directory made for the socket
  std::string ipc_path;  // the socket file in it
  // ZeroMQ's socket monitors of both sockets report a connection that closes (a pool killed,
  // its host gone) as the descriptor it had; each message says which descriptor it came in on
  // (ZMQ_SRCFD), so links tells whose connection that was. A descriptor number may be reused
  // by a new connection before the event is read: the socket's inode tells them apart.
  zmq::socket_t router_monitor;
  zmq::socket_t local_monitor;
  struct Link {
    std::string identity;
    ino_t inode = 0;
  };
  // Descriptor -> the pool whose messages came in on it: descriptors are small numbers, so a
  // vector indexed by them (no hashing on the per-message path).
  std::vector<Link> links;
  // Each identity that sent a message: the socket its messages come in on (it is answered on
  // the same one), and the connection (descriptor, inode; -1: none) of its latest REGISTER or
  // HEARTBEAT. One table, so that a message costs one lookup by identity in the shell.
  struct Peer {
    zmq::socket_t* socket = nullptr;
    int fd = -1;
    ino_t inode = 0;
  };
  struct IdentityHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, Peer, IdentityHash, std::equal_to<>> peers;
  // Closed connections not yet confirmed closed: libzmq reports the event just before it closes
  // the descriptor, and an event may be of an earlier connection on a reused number.
  struct Closed {
    int fd;
    Link link;
    TimePoint when;
  };
  std::vector<Closed> closed;
  int port = 0;
  // Caps the TCP connections; fed the ACCEPTED and DISCONNECTED events of router_monitor.
  std::optional<ConnectionGuard> guard;
  int wake_fd = -1;
  Dispatcher dispatcher;
  std::mutex mutex;
  std::vector<Command> commands;
  std::atomic<bool> stopping{false};
  std::thread thread;
  std::once_flag stopped;

  explicit Impl(InterchangeConfig c) : config(std::move(c)), dispatcher(config.dispatcher) {}

  static void configure(zmq::socket_t& s) {
    s.set(zmq::sockopt::linger, 0);
    s.set(zmq::sockopt::router_mandatory, 0);
    // No high-water mark: past it a ROUTER drops messages silently, and a dropped TASKS or
    // RESULTS message is lost work. What is queued is bounded anyway: tasks go out only up to
    // each pool's capacity, and pools send results only for tasks they hold.
    s.set(zmq::sockopt::sndhwm, 0);
    s.set(zmq::sockopt::rcvhwm, 0);
  }

  // The same-host socket: <ipc_dir>/ipc-XXXXXX/sock, the directory made by mkdtemp (mode
  // 0700, so only this user reaches the socket). A Unix socket path is limited to 107 bytes:
  // a deeper ipc_dir gets its directory in $TMPDIR (or /tmp) instead, with the same mode.
  void bind_local() {
    constexpr std::size_t kMaxPath = sizeof(sockaddr_un{}.sun_path) - 1;
    const std::string name = "/sock";
    std::error_code ec;
    detail::create_private_directories(config.ipc_dir, ec);
    std::string tmpl = config.ipc_dir + "/ipc-XXXXXX";
    if (tmpl.size() + name.size() > kMaxPath) {
      const char* tmp = std::getenv("TMPDIR");
      const std::string base = tmp && *tmp && std::strlen(tmp) + 30 <= kMaxPath ? tmp : "/tmp";
      tmpl = base + "/pervade-ipc-XXXXXX";
    }
    if (!::mkdtemp(tmpl.data()))
      throw Error("interchange: cannot make a directory for the same-host socket (" + tmpl + "): " +
                  std::strerror(errno));
    ipc_dir = tmpl;
    ipc_path = ipc_dir + name;
    local = zmq::socket_t(context, zmq::socket_type::router);
    configure(local);
    try {
      local.bind("ipc://" + ipc_path);
    } catch (const zmq::error_t& e) {
      remove_local_files();
      throw Error("interchange: cannot bind ipc://" + ipc_path + ": " + e.what());
    }
  }

  void watch_tcp_connections(long fd_limit) {
    guard.emplace(port, config.max_tcp_connections ? config.max_tcp_connections : ConnectionGuard::cap_for(fd_limit));
    // libzmq keeps one monitor per socket: this one serves the guard and lost-pool detection.
    router_monitor = monitor(router, "tcp", ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED);
  }

  void remove_local_files() {
    if (!ipc_path.empty()) ::unlink(ipc_path.c_str());
    if (!ipc_dir.empty()) ::rmdir(ipc_dir.c_str());
  }

  void bind() {
    configure(router);
    // Thousands of pools connect at once when a big allocation starts: with ZeroMQ's default
    // listen backlog (100) the kernel drops their SYNs and TCP retries after 1, 3, 7, 15 s...,
    // which made registering 3,000 simulated pools take 24 s instead of about 2 (BENCHMARKS.md,
    // "One interchange, many pools"). But libzmq accepts whatever waits there in one burst,
    // before the connection guard hears of it, and again each time the backlog refills until the
    // interchange thread runs: the backlog stays within a quarter of the descriptors kept in
    // reserve, so a flood must outrun the guard four times over to take them all (1,024
    // descriptors: 64; 65,536: 2,048).
    const long fd_limit = raise_fd_limit();
    router.set(zmq::sockopt::backlog, static_cast<int>(std::min<long>(65535, ConnectionGuard::reserve_for(fd_limit) / 4)));
    router.set(zmq::sockopt::handshake_ivl, kHandshakeTimeoutMs);
    if (config.address.find(':') != std::string::npos) router.set(zmq::sockopt::ipv6, 1);
    if (config.curve) {
      router.set(zmq::sockopt::curve_server, 1);
      router.set(zmq::sockopt::curve_secretkey, config.curve->secret_key);
    }
    const std::string host = config.address.find(':') != std::string::npos ? "[" + config.address + "]" : config.address;
    const int first = config.port ? config.port : config.port_min;
    const int last = config.port ? config.port : config.port_max;
    std::string error;
    for (int p = first; p <= last && port == 0; ++p) {
      try {
        router.bind("tcp://" + host + ":" + std::to_string(p));
        port = p;
      } catch (const zmq::error_t& e) {
        error = e.what();
      }
    }
    if (port != 0) {
      watch_tcp_connections(fd_limit);
      return;
    }
    throw Error("interchange: cannot bind tcp://" + host + " on a port in " + std::to_string(first) + "-" +
                std::to_string(last) + ": " + error);
  }

  // A PAIR socket that receives the `events` of `socket`.
  zmq::socket_t monitor(zmq::socket_t& socket, const std::string& name, int events) {
    const std::string endpoint = "inproc://pervade-monitor-" + name;
    if (zmq_socket_monitor(socket.handle(), endpoint.c_str(), events) != 0)
      throw Error(std::string("interchange: cannot monitor its socket: ") + zmq_strerror(zmq_errno()));
    zmq::socket_t pair(context, zmq::socket_type::pair);
    pair.set(zmq::sockopt::linger, 0);
    pair.set(zmq::sockopt::rcvhwm, 0);  // no event dropped, however many connections come at once
    pair.connect(endpoint);
    return pair;
  }

  // `fresh`: the message may be the first of a new connection on a reused descriptor number
  // (REGISTER, or the HEARTBEAT a pool sends when it reconnects), so the inode is read again.
  void note_link(int fd, const std::string& identity, Peer& peer, bool fresh) {
    if (static_cast<std::size_t>(fd) >= links.size()) links.resize(static_cast<std::size_t>(fd) + 1);
    Link& link = links[static_cast<std::size_t>(fd)];
    if (link.identity == identity && !fresh) return;
    struct stat st {};
    link = Link{identity, ::fstat(fd, &st) == 0 ? st.st_ino : 0};
    peer.fd = fd;
    peer.inode = link.inode;
  }

  // Monitor events: two frames, (uint16 event, uint32 value: the descriptor) then the endpoint.
  void read_monitor(zmq::socket_t& monitor_socket, TimePoint now) {
    for (;;) {
      zmq::message_t event, endpoint;
      if (!monitor_socket.recv(event, zmq::recv_flags::dontwait)) return;
      if (event.more()) (void)monitor_socket.recv(endpoint, zmq::recv_flags::none);
      if (event.size() < 6) continue;
      std::uint16_t id;
      std::uint32_t fd;
      std::memcpy(&id, event.data(), sizeof id);
      std::memcpy(&fd, static_cast<const char*>(event.data()) + sizeof id, sizeof fd);
      if (guard && &monitor_socket == &router_monitor) guard->on_event(id, static_cast<std::int32_t>(fd));
      if (id != ZMQ_EVENT_DISCONNECTED) continue;
      if (fd < links.size() && !links[fd].identity.empty())
        closed.push_back(Closed{static_cast<int>(fd), links[fd], now});
    }
  }

  // A connection is closed once its descriptor is closed or is another socket; one still open
  // after kStaleEvent was not the connection the event was about. A pool whose latest message
  // came in on another connection (even on the same descriptor number) is already back.
  void confirm_closed(TimePoint now) {
    constexpr auto kStaleEvent = std::chrono::milliseconds(500);
    std::erase_if(closed, [&](const Closed& c) {
      struct stat st {};
      if (::fstat(c.fd, &st) == 0 && st.st_ino == c.link.inode) return now - c.when >= kStaleEvent;
      if (Link& link = links[static_cast<std::size_t>(c.fd)]; link.inode == c.link.inode) link = Link{};
      auto peer = peers.find(c.link.identity);
      if (peer != peers.end() && peer->second.fd == c.fd && peer->second.inode == c.link.inode) {
        peer->second.fd = -1;
        dispatcher.disconnected(c.link.identity, c.when);
      }
      return true;
    });
  }

  // What is waiting on one socket, without blocking, up to kMessagesPerRound: with thousands of
  // pools the messages can arrive as fast as they are handled, and a loop that drained the
  // socket would put off heartbeats, loss detection and the commands (submissions) for as long
  // as that lasts (10,000 pools noticed lost pools 10 s late). What is left is read next round.
  void receive_all(zmq::socket_t& socket) {
    for (int n = 0; n < kMessagesPerRound; ++n) {
      zmq::message_t identity;
      auto body = std::make_shared<zmq::message_t>();
      if (!socket.recv(identity, zmq::recv_flags::dontwait)) break;
      bool complete = identity.more() && socket.recv(*body, zmq::recv_flags::none);
      if (!complete) continue;
      // The frames after the body are the out-of-band buffers of its results: they stay in
      // ZeroMQ's messages, which the results share up to the Python value (no copy).
      std::vector<protocol::SharedBuffer> frames{{body, static_cast<const char*>(body->data()), body->size()}};
      for (bool more = body->more(); more;) {
        auto extra = std::make_shared<zmq::message_t>();
        if (!socket.recv(*extra, zmq::recv_flags::none)) break;  // the rest of a message is always there
        more = extra->more();
        frames.push_back({extra, static_cast<const char*>(extra->data()), extra->size()});
      }
      std::string error;
      auto decoded = protocol::decode_pool_message(frames, &error);
      if (!decoded) continue;  // garbage: dropped (the pool, if any, will time out)
      const std::string_view id(static_cast<const char*>(identity.data()), identity.size());
      auto peer = peers.find(id);
      if (peer == peers.end()) peer = peers.emplace(std::string(id), Peer{}).first;
      peer->second.socket = &socket;
      if (const int fd = zmq_msg_get(body->handle(), ZMQ_SRCFD); fd >= 0)
        note_link(fd, peer->first, peer->second, !std::holds_alternative<protocol::Results>(*decoded));
      dispatcher.on_message(peer->first, std::move(*decoded), Clock::now());
    }
  }

  void run(TimePoint) {
    std::deque<Command> pending;  // taken from commands, not yet run (kCommandsPerRound a round)
    while (true) {
      const TimePoint now = Clock::now();
      const auto deadline = dispatcher.next_deadline();
      long timeout_ms = -1;
      if (deadline != TimePoint::max())
        timeout_ms = std::max<long>(0, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count() + 1);
      if (!closed.empty()) timeout_ms = timeout_ms < 0 ? 10 : std::min<long>(timeout_ms, 10);
      if (!pending.empty() || dispatcher.can_dispatch()) timeout_ms = 0;  // the last round left work
      zmq::pollitem_t items[] = {{router.handle(), 0, ZMQ_POLLIN, 0},
                                 {nullptr, wake_fd, ZMQ_POLLIN, 0},
                                 {router_monitor.handle(), 0, ZMQ_POLLIN, 0},
                                 {local.handle(), 0, ZMQ_POLLIN, 0},
                                 {local_monitor.handle(), 0, ZMQ_POLLIN, 0}};
      zmq::poll(items, local ? 5 : 3, std::chrono::milliseconds(timeout_ms));
      if (items[1].revents & ZMQ_POLLIN) {
        std::uint64_t n;
        if (::read(wake_fd, &n, sizeof n) < 0) {
          // Nothing to do: the eventfd is only a doorbell.
        }
      }
      {
        std::lock_guard lock(mutex);
        std::move(commands.begin(), commands.end(), std::back_inserter(pending));
        commands.clear();
      }
      for (std::size_t n = 0; n < kCommandsPerRound && !pending.empty(); ++n) {
        pending.front()(dispatcher, Clock::now());
        pending.pop_front();
      }
      receive_all(router);
      if (local) receive_all(local);
      // After the messages: a message read above came in on a connection whose descriptor the
      // links now hold, so its later close is attributed to the right pool.
      read_monitor(router_monitor, Clock::now());
      if (local) read_monitor(local_monitor, Clock::now());
      if (!closed.empty()) confirm_closed(Clock::now());
      dispatcher.tick(Clock::now());
      flush();
      if (stopping.load()) {
        for (auto& c : pending) c(dispatcher, Clock::now());  // answers every ask()
        dispatcher.shutdown_all();
        flush();
        return;
      }
    }
  }

  void flush() {
    for (auto& [identity, message] : dispatcher.take_outbox(kTasksPerRound)) {
      auto peer = peers.find(identity);
      zmq::socket_t& socket = peer != peers.end() ? *peer->second.socket : router;
      // Zero-copy: ZeroMQ takes the encoded bytes (TASKS can be megabytes) and frees them;
      // the tasks' out-of-band buffers follow as frames that share the driver's bytes.
      auto* bytes = new std::string(protocol::encode(message));
      zmq::message_t body(
          bytes->data(), bytes->size(), [](void*, void* owner) { delete static_cast<std::string*>(owner); }, bytes);
      const std::vector<protocol::SharedBuffer> frames = protocol::out_of_band_frames(message);
      try {
        socket.send(zmq::buffer(identity), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
        socket.send(body, frames.empty() ? zmq::send_flags::dontwait
                                         : zmq::send_flags::sndmore | zmq::send_flags::dontwait);
        for (std::size_t i = 0; i < frames.size(); ++i) {
          auto* shared = new protocol::SharedBuffer(frames[i]);
          zmq::message_t frame(
              const_cast<char*>(shared->data), shared->size,
              [](void*, void* owner) { delete static_cast<protocol::SharedBuffer*>(owner); }, shared);
          socket.send(frame, i + 1 < frames.size() ? zmq::send_flags::sndmore | zmq::send_flags::dontwait
                                                   : zmq::send_flags::dontwait);
        }
      } catch (const zmq::error_t&) {
        // A pool that vanished: its heartbeat timeout will clean up.
      }
    }
    // Samples first: a task's last sample comes before its result, which ends the try.
    auto usage = dispatcher.take_usage();
    if (!usage.empty() && on_usage) on_usage(std::move(usage));
    auto done = dispatcher.take_completed();
    if (!done.empty()) on_completed(std::move(done));
    for (const auto& e : dispatcher.take_events()) on_event(e);
  }

  void post(Command c) {
    std::vector<Command> one;
    one.push_back(std::move(c));
    post(std::move(one));
  }

  void post(std::vector<Command> cs) {
    if (cs.empty()) return;
    {
      std::lock_guard lock(mutex);
      std::move(cs.begin(), cs.end(), std::back_inserter(commands));
    }
    const std::uint64_t one = 1;
    if (::write(wake_fd, &one, sizeof one) < 0) {
      // The eventfd counter cannot overflow in practice; a failed write only delays the command.
    }
  }

  template <class R>
  R ask(std::function<R(Dispatcher&, TimePoint)> f) {
    if (stopping.load()) return R{};
    auto promise = std::make_shared<std::promise<R>>();
    auto result = promise->get_future();
    post([promise, f = std::move(f)](Dispatcher& d, TimePoint now) { promise->set_value(f(d, now)); });
    return result.get();
  }
};

Interchange::Interchange(InterchangeConfig config, CompletedFn on_completed, EventFn on_event, UsageFn on_usage)
    : impl_(std::make_unique<Impl>(std::move(config))) {
  impl_->on_completed = std::move(on_completed);
  impl_->on_event = std::move(on_event);
  impl_->on_usage = std::move(on_usage);
  impl_->wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (impl_->wake_fd < 0) throw Error("interchange: eventfd failed");
  impl_->bind();
  if (!impl_->config.ipc_dir.empty()) {
    impl_->bind_local();
    impl_->local_monitor = impl_->monitor(impl_->local, "ipc", ZMQ_EVENT_DISCONNECTED);
  }
  Impl* raw = impl_.get();
  impl_->thread = std::thread([raw] {
    detail::name_this_thread("pv-interchange");
    raw->run(Clock::now());
  });
}

Interchange::~Interchange() {
  stop();
  if (impl_->wake_fd >= 0) ::close(impl_->wake_fd);
}

int Interchange::port() const { return impl_->port; }

std::string Interchange::url() const {
  const auto& a = impl_->config.address;
  const std::string host = a == "*" ? "127.0.0.1" : (a.find(':') != std::string::npos ? "[" + a + "]" : a);
  return "tcp://" + host + ":" + std::to_string(impl_->port);
}

std::string Interchange::ipc_url() const { return impl_->ipc_path.empty() ? "" : "ipc://" + impl_->ipc_path; }

void Interchange::add_function(const std::string& hash, std::string fn) {
  impl_->post([hash, fn = std::move(fn)](Dispatcher& d, TimePoint) mutable { d.add_function(hash, std::move(fn)); });
}

void Interchange::submit(std::vector<DispatchTask> tasks) {
  auto shared = std::make_shared<std::vector<DispatchTask>>(std::move(tasks));
  std::vector<Command> chunks;
  for (std::size_t first = 0; first < shared->size(); first += kTasksPerCommand) {
    const std::size_t last = std::min(shared->size(), first + kTasksPerCommand);
    chunks.push_back([shared, first, last](Dispatcher& d, TimePoint now) {
      for (std::size_t i = first; i < last; ++i) d.submit(std::move((*shared)[i]), now);
    });
  }
  impl_->post(std::move(chunks));
}

void Interchange::cancel(std::vector<std::uint64_t> task_ids) {
  auto shared = std::make_shared<std::vector<std::uint64_t>>(std::move(task_ids));
  std::vector<Command> chunks;
  for (std::size_t first = 0; first < shared->size(); first += kTasksPerCommand) {
    const std::size_t last = std::min(shared->size(), first + kTasksPerCommand);
    chunks.push_back([shared, first, last](Dispatcher& d, TimePoint) {
      for (std::size_t i = first; i < last; ++i) d.cancel((*shared)[i]);
    });
  }
  impl_->post(std::move(chunks));
}

bool Interchange::hold(const std::string& pool_id, bool held) {
  return impl_->ask<bool>([pool_id, held](Dispatcher& d, TimePoint) { return d.hold(pool_id, held); });
}

bool Interchange::drain(const std::string& pool_id) {
  return impl_->ask<bool>([pool_id](Dispatcher& d, TimePoint) { return d.drain(pool_id); });
}

std::size_t Interchange::lose_block(const std::string& block_id, const std::string& reason) {
  return impl_->ask<std::size_t>(
      [block_id, reason](Dispatcher& d, TimePoint) { return d.lose_block(block_id, reason); });
}

std::vector<PoolInfo> Interchange::pools() {
  return impl_->ask<std::vector<PoolInfo>>([](Dispatcher& d, TimePoint now) { return d.pools(now); });
}

std::size_t Interchange::outstanding() {
  return impl_->ask<std::size_t>([](Dispatcher& d, TimePoint) { return d.queued() + d.in_flight(); });
}

void Interchange::stop() {
  std::call_once(impl_->stopped, [this] {
    impl_->stopping.store(true);
    impl_->post([](Dispatcher&, TimePoint) {});
    if (impl_->thread.joinable()) impl_->thread.join();
    // Closing the context joins ZeroMQ's own I/O threads: nothing is left running after stop().
    zmq_socket_monitor(impl_->router.handle(), nullptr, 0);
    impl_->router_monitor.close();
    impl_->router.close();
    if (impl_->local) {
      zmq_socket_monitor(impl_->local.handle(), nullptr, 0);
      impl_->local_monitor.close();
      impl_->local.close();
    }
    impl_->context.close();
    impl_->remove_local_files();
  });
}

}  // namespace pervade::interchange
