// The interchange's ZeroMQ shell: one thread polls the ROUTER socket and an eventfd that
// other threads ring when they queue a command; everything else is the Dispatcher.
#include "interchange/interchange.hpp"

#include <sys/eventfd.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <future>
#include <mutex>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <zmq.hpp>

#include "interchange/connection_guard.hpp"
#include "pervade/errors.hpp"
#include "util/private_files.hpp"
#include "util/thread_name.hpp"

namespace pervade::interchange {

namespace {
using Command = std::function<void(Dispatcher&, TimePoint)>;
// A TCP peer that has not finished the ZMTP (and CurveZMQ) handshake after this long is
// disconnected (libzmq's default: 30 s). A pool needs a few round trips.
constexpr int kHandshakeTimeoutMs = 10000;
constexpr const char* kTcpMonitorEndpoint = "inproc://pervade-interchange-tcp-monitor";
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
  // Which socket each pool's messages come in on, to answer it on the same one.
  std::unordered_map<std::string, zmq::socket_t*> route;
  int port = 0;
  // Connections accepted and closed on the TCP socket, as its monitor reports them.
  zmq::socket_t tcp_monitor;
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

  void watch_tcp_connections() {
    const long fd_limit = raise_fd_limit();
    guard.emplace(port, config.max_tcp_connections ? config.max_tcp_connections : ConnectionGuard::cap_for(fd_limit));
    if (zmq_socket_monitor(router.handle(), kTcpMonitorEndpoint, ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED) != 0)
      throw Error(std::string("interchange: cannot monitor its TCP socket: ") + zmq_strerror(zmq_errno()));
    tcp_monitor = zmq::socket_t(context, zmq::socket_type::pair);
    tcp_monitor.set(zmq::sockopt::rcvhwm, 0);  // no event dropped, however many connections come at once
    tcp_monitor.connect(kTcpMonitorEndpoint);
  }

  // Monitor events: a 6-byte frame (16-bit event, 32-bit value) and the endpoint.
  void read_tcp_monitor() {
    while (true) {
      zmq::message_t event, endpoint;
      if (!tcp_monitor.recv(event, zmq::recv_flags::dontwait)) return;
      if (event.more()) (void)tcp_monitor.recv(endpoint, zmq::recv_flags::none);
      if (event.size() < 6) continue;
      std::uint16_t id;
      std::int32_t value;
      std::memcpy(&id, event.data(), sizeof id);
      std::memcpy(&value, static_cast<const char*>(event.data()) + sizeof id, sizeof value);
      guard->on_event(id, value);
    }
  }

  void remove_local_files() {
    if (!ipc_path.empty()) ::unlink(ipc_path.c_str());
    if (!ipc_dir.empty()) ::rmdir(ipc_dir.c_str());
  }

  void bind() {
    configure(router);
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
    for (int p = first; p <= last; ++p) {
      try {
        router.bind("tcp://" + host + ":" + std::to_string(p));
        port = p;
        watch_tcp_connections();
        return;
      } catch (const zmq::error_t& e) {
        error = e.what();
      }
    }
    throw Error("interchange: cannot bind tcp://" + host + " on a port in " + std::to_string(first) + "-" +
                std::to_string(last) + ": " + error);
  }

  // Everything waiting on one socket, without blocking.
  void receive_all(zmq::socket_t& socket) {
    while (true) {
      zmq::message_t identity, body;
      if (!socket.recv(identity, zmq::recv_flags::dontwait)) break;
      bool complete = identity.more() && socket.recv(body, zmq::recv_flags::none);
      // Any extra frames belong to a broken peer: consume them.
      for (bool more = complete && body.more(); more;) {
        zmq::message_t extra;
        if (!socket.recv(extra, zmq::recv_flags::none)) break;
        more = extra.more();
        complete = false;
      }
      if (!complete) continue;
      std::string error;
      auto decoded = protocol::decode_pool_message(static_cast<const char*>(body.data()), body.size(), &error);
      if (!decoded) continue;  // garbage: dropped (the pool, if any, will time out)
      std::string id = identity.to_string();
      route[id] = &socket;
      dispatcher.on_message(id, std::move(*decoded), Clock::now());
    }
  }

  void run(TimePoint) {
    std::vector<Command> pending;
    while (true) {
      const TimePoint now = Clock::now();
      const auto deadline = dispatcher.next_deadline();
      long timeout_ms = -1;
      if (deadline != TimePoint::max())
        timeout_ms = std::max<long>(0, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count() + 1);
      zmq::pollitem_t items[] = {{router.handle(), 0, ZMQ_POLLIN, 0},
                                 {nullptr, wake_fd, ZMQ_POLLIN, 0},
                                 {tcp_monitor.handle(), 0, ZMQ_POLLIN, 0},
                                 {local.handle(), 0, ZMQ_POLLIN, 0}};
      zmq::poll(items, local ? 4 : 3, std::chrono::milliseconds(timeout_ms));
      if (items[2].revents & ZMQ_POLLIN) read_tcp_monitor();
      if (items[1].revents & ZMQ_POLLIN) {
        std::uint64_t n;
        if (::read(wake_fd, &n, sizeof n) < 0) {
          // Nothing to do: the eventfd is only a doorbell.
        }
      }
      {
        std::lock_guard lock(mutex);
        pending.swap(commands);
      }
      for (auto& c : pending) c(dispatcher, Clock::now());
      pending.clear();
      receive_all(router);
      if (local) receive_all(local);
      dispatcher.tick(Clock::now());
      flush();
      if (stopping.load()) {
        dispatcher.shutdown_all();
        flush();
        return;
      }
    }
  }

  void flush() {
    for (auto& [identity, message] : dispatcher.take_outbox()) {
      auto r = route.find(identity);
      zmq::socket_t& socket = r != route.end() ? *r->second : router;
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
    {
      std::lock_guard lock(mutex);
      commands.push_back(std::move(c));
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
  if (!impl_->config.ipc_dir.empty()) impl_->bind_local();
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
  impl_->post([shared](Dispatcher& d, TimePoint now) {
    for (auto& t : *shared) d.submit(std::move(t), now);
  });
}

void Interchange::cancel(std::vector<std::uint64_t> task_ids) {
  impl_->post([ids = std::move(task_ids)](Dispatcher& d, TimePoint) {
    for (std::uint64_t id : ids) d.cancel(id);
  });
}

bool Interchange::hold(const std::string& pool_id, bool held) {
  return impl_->ask<bool>([pool_id, held](Dispatcher& d, TimePoint) { return d.hold(pool_id, held); });
}

bool Interchange::drain(const std::string& pool_id) {
  return impl_->ask<bool>([pool_id](Dispatcher& d, TimePoint) { return d.drain(pool_id); });
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
    impl_->tcp_monitor.close();
    impl_->router.close();
    if (impl_->local) impl_->local.close();
    impl_->context.close();
    impl_->remove_local_files();
  });
}

}  // namespace pervade::interchange
