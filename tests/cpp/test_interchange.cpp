// The interchange with its real ZeroMQ socket: pools are DEALER sockets in the test. Random
// bytes and malformed messages must neither crash it nor disturb a registered pool's work.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <random>
#include <zmq.hpp>

#include "interchange/connection_guard.hpp"
#include "interchange/interchange.hpp"

using namespace pervade;
using namespace pervade::interchange;
using namespace std::chrono_literals;

namespace {

struct Collected {
  std::mutex mutex;
  std::vector<Completed> done;
  std::vector<PoolEvent> events;
};

class InterchangeTest : public ::testing::Test {
 public:  // the static helpers serve InterchangeSameHost too
  InterchangeTest() {
    InterchangeConfig cfg;
    cfg.port_min = 57100;
    cfg.port_max = 57999;
    cfg.dispatcher.heartbeat_period = 0.2;
    cfg.dispatcher.heartbeat_threshold = 30;
    cfg.dispatcher.python_version = "3.11.7";
    ix = std::make_unique<Interchange>(
        cfg,
        [this](std::vector<Completed>&& d) {
          std::lock_guard lock(got.mutex);
          for (auto& c : d) got.done.push_back(std::move(c));
        },
        [this](const PoolEvent& e) {
          std::lock_guard lock(got.mutex);
          got.events.push_back(e);
        });
  }

  zmq::socket_t dealer(const std::string& id) {
    zmq::socket_t s(context, zmq::socket_type::dealer);
    s.set(zmq::sockopt::linger, 0);
    s.set(zmq::sockopt::routing_id, id);
    s.connect(ix->url());
    return s;
  }

  static void send(zmq::socket_t& s, const std::string& bytes) { s.send(zmq::buffer(bytes), zmq::send_flags::none); }

  // Next message from the interchange on `s` that is not a heartbeat, or nullopt after 10 s.
  static std::optional<protocol::InterchangeMessage> receive(zmq::socket_t& s) {
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < deadline) {
      zmq::pollitem_t item{s.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, 100ms);
      if (!(item.revents & ZMQ_POLLIN)) continue;
      // All the frames of the message (TASKS: out-of-band buffers after the first).
      std::vector<protocol::SharedBuffer> frames;
      for (bool more = true; more;) {
        auto m = std::make_shared<zmq::message_t>();
        if (!s.recv(*m)) break;
        more = m->more();
        frames.push_back({m, static_cast<const char*>(m->data()), m->size()});
      }
      auto decoded = protocol::decode_interchange_message(frames);
      if (decoded && !std::holds_alternative<protocol::Heartbeat>(*decoded)) return decoded;
    }
    return std::nullopt;
  }

  static std::string register_message(const std::string& id) {
    protocol::Register r;
    r.pervade_version = "0.1.0";
    r.python_version = "3.11.7";
    r.pool_id = id;
    r.block_id = "0";
    r.hostname = "localhost";
    r.worker_count = 1;
    return protocol::encode(protocol::PoolMessage{r});
  }

  bool wait_done(std::size_t n) {
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < deadline) {
      {
        std::lock_guard lock(got.mutex);
        if (got.done.size() >= n) return true;
      }
      std::this_thread::yield();
    }
    return false;
  }

  zmq::context_t context{1};
  Collected got;
  std::unique_ptr<Interchange> ix;
};

TEST_F(InterchangeTest, RandomBytesDoNotDisturbARegisteredPool) {
  auto pool = dealer("good");
  send(pool, register_message("good"));
  auto reply = receive(pool);
  ASSERT_TRUE(reply && std::holds_alternative<protocol::Registered>(*reply));

  // A fuzzer on another connection: random frames, random multi-frame messages and
  // truncated valid messages.
  auto noisy = dealer("noisy");
  std::mt19937 rng(1234);
  const std::string valid = register_message("noisy");
  for (int i = 0; i < 3000; ++i) {
    std::string bytes;
    // (Mutations of valid messages are fuzzed in ProtocolTest; here a mutated REGISTER could
    // legitimately register a second pool and take the task.)
    if (i % 2 == 0) {
      bytes = valid.substr(0, rng() % valid.size());
    } else {
      bytes.resize(rng() % 300);
      for (auto& c : bytes) c = static_cast<char>(rng());
    }
    if (i % 10 == 0) {
      noisy.send(zmq::buffer(bytes), zmq::send_flags::sndmore);
      noisy.send(zmq::buffer(std::string("extra frame")), zmq::send_flags::none);
    } else {
      send(noisy, bytes);
    }
  }

  // The registered pool still gets work and its result still counts.
  interchange::DispatchTask t;
  t.task_id = 42;
  t.kind = protocol::kKindShell;
  t.payload = protocol::encode_shell_payload({"true", "", true, "", true, 0});
  ix->submit({t});
  std::optional<protocol::InterchangeMessage> m;
  do {
    m = receive(pool);
  } while (m && !std::holds_alternative<protocol::Tasks>(*m));
  ASSERT_TRUE(m) << "the pool got no task after the noise";
  EXPECT_EQ(std::get<protocol::Tasks>(*m).tasks.at(0).task_id, 42u);
  send(pool, protocol::encode(protocol::PoolMessage{protocol::Results{{{42, 0, protocol::encode_exit_code(0)}}}}));
  ASSERT_TRUE(wait_done(1));
  EXPECT_EQ(got.done[0].task_id, 42u);
  auto pools = ix->pools();
  ASSERT_GE(pools.size(), 1u);
  EXPECT_EQ(ix->outstanding(), 0u);
}

TEST_F(InterchangeTest, WrongVersionIsRefusedWithAReason) {
  auto pool = dealer("old");
  protocol::Register r;
  r.python_version = "3.8.10";
  r.pool_id = "old";
  r.worker_count = 1;
  send(pool, protocol::encode(protocol::PoolMessage{r}));
  auto reply = receive(pool);
  ASSERT_TRUE(reply);
  auto* refused = std::get_if<protocol::Refused>(&*reply);
  ASSERT_NE(refused, nullptr);
  EXPECT_NE(refused->reason.find("3.8.10"), std::string::npos);
  EXPECT_TRUE(ix->pools().empty());
}

// A flood of TCP connections that never say a word (no key, no handshake) is capped: past
// max_tcp_connections each new one is closed at once, so they cannot fill the process's
// descriptor table; once they are gone a pool registers as usual.
TEST(InterchangeFlood, ConnectionsPastTheCapAreClosed) {
  InterchangeConfig cfg;
  cfg.port_min = 57100;
  cfg.port_max = 57999;
  cfg.dispatcher.python_version = "3.11.7";
  cfg.max_tcp_connections = 20;
  Interchange ix(cfg, [](std::vector<Completed>&&) {}, [](const PoolEvent&) {});

  constexpr int kFlood = 100;
  std::vector<int> flood;
  for (int i = 0; i < kFlood; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd, 0);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(static_cast<std::uint16_t>(ix.port()));
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to), 0);
    flood.push_back(fd);
  }
  // Count the connections the interchange closed (their end of the stream, or a reset): all
  // but the cap, and not one of those it kept.
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  std::vector<bool> closed(kFlood, false);
  int n_closed = 0;
  while (n_closed < kFlood - 20 && std::chrono::steady_clock::now() < deadline) {
    std::vector<pollfd> fds;
    for (int fd : flood) fds.push_back({fd, POLLIN, 0});
    ::poll(fds.data(), fds.size(), 100);
    for (int i = 0; i < kFlood; ++i) {
      if (closed[i] || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buf[64];
      const ssize_t got = ::recv(flood[i], buf, sizeof buf, MSG_DONTWAIT);
      if (got == 0 || (got < 0 && errno != EAGAIN)) {
        closed[i] = true;
        ++n_closed;
      }
    }
  }
  EXPECT_EQ(n_closed, kFlood - 20) << "connections past the cap of 20 must be closed";
  for (int fd : flood) ::close(fd);

  zmq::context_t context{1};
  zmq::socket_t pool(context, zmq::socket_type::dealer);
  pool.set(zmq::sockopt::linger, 0);
  pool.set(zmq::sockopt::routing_id, "after");
  pool.connect(ix.url());
  InterchangeTest::send(pool, InterchangeTest::register_message("after"));
  auto reply = InterchangeTest::receive(pool);
  ASSERT_TRUE(reply && std::holds_alternative<protocol::Registered>(*reply));
}

// The monitor reports descriptor numbers after the fact; one reused meanwhile by anything but
// a connection accepted on the interchange's port (a pipe, another socket) is never touched.
TEST(InterchangeFlood, TheGuardClosesOnlyConnectionsAcceptedOnItsPort) {
  ConnectionGuard guard(/*port=*/1, /*cap=*/2);
  guard.on_event(ZMQ_EVENT_ACCEPTED, 1000);
  guard.on_event(ZMQ_EVENT_ACCEPTED, 1001);
  EXPECT_EQ(guard.open(), 2u);
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  const int other = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(other, 0);
  guard.on_event(ZMQ_EVENT_ACCEPTED, p[0]);  // over the cap, but a pipe
  guard.on_event(ZMQ_EVENT_ACCEPTED, other);  // over the cap, but not bound to port 1
  EXPECT_EQ(guard.closed(), 0u);
  EXPECT_EQ(::write(p[1], "x", 1), 1);
  char c = 0;
  EXPECT_EQ(::read(p[0], &c, 1), 1);
  guard.on_event(ZMQ_EVENT_DISCONNECTED, 1000);
  EXPECT_EQ(guard.open(), 1u);
  guard.on_event(ZMQ_EVENT_CONNECTED, 1002);  // other events change nothing
  EXPECT_EQ(guard.open(), 1u);
  ::close(p[0]);
  ::close(p[1]);
  ::close(other);
}

TEST(InterchangeFlood, TheSoftDescriptorLimitIsRaisedAndTheCapKeepsAReserve) {
  rlimit before{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &before), 0);
  rlimit low = before;
  low.rlim_cur = std::min<rlim_t>(before.rlim_max, 512);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  const long limit = raise_fd_limit();
  rlimit now{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &now), 0);
  ::setrlimit(RLIMIT_NOFILE, &before);
  EXPECT_EQ(now.rlim_cur, std::min<rlim_t>(before.rlim_max, kFdLimitTarget));
  EXPECT_EQ(static_cast<rlim_t>(limit), now.rlim_cur);
  EXPECT_EQ(ConnectionGuard::cap_for(1024), 1024u - 256u);
  EXPECT_EQ(ConnectionGuard::cap_for(65536), 65536u - 8192u);
}

// Pools on the driver's host connect to a Unix socket in a 0700 directory (no CurveZMQ);
// pools on TCP keep working beside them; each is answered on its own socket; big buffers
// arrive as frames after TASKS; stop() removes the socket and its directory.
TEST(InterchangeSameHost, UnixSocketBesideTcp) {
  const auto base = std::filesystem::temp_directory_path() / ("pervade-ix-" + std::to_string(::getpid()));
  std::filesystem::remove_all(base);
  InterchangeConfig cfg;
  cfg.port_min = 57100;
  cfg.port_max = 57999;
  cfg.dispatcher.python_version = "3.11.7";
  cfg.ipc_dir = (base / "run" / "htex").string();
  Collected got;
  Interchange ix(
      cfg,
      [&](std::vector<Completed>&& d) {
        std::lock_guard lock(got.mutex);
        for (auto& c : d) got.done.push_back(std::move(c));
      },
      [](const PoolEvent&) {});
  const std::string url = ix.ipc_url();
  ASSERT_EQ(url.rfind("ipc://" + cfg.ipc_dir + "/ipc-", 0), 0u) << url;
  const std::filesystem::path sock = url.substr(6);
  ASSERT_TRUE(std::filesystem::exists(sock));
  struct stat st {};
  ASSERT_EQ(::stat(sock.parent_path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u) << "only this user may reach the socket";

  zmq::context_t context{1};
  zmq::socket_t local(context, zmq::socket_type::dealer), remote(context, zmq::socket_type::dealer);
  for (auto* s : {&local, &remote}) s->set(zmq::sockopt::linger, 0);
  local.set(zmq::sockopt::routing_id, "local");
  remote.set(zmq::sockopt::routing_id, "remote");
  local.connect(url);
  remote.connect(ix.url());
  // Garbage on the Unix socket is dropped as on TCP.
  InterchangeTest::send(local, "\x93garbage");
  InterchangeTest::send(local, InterchangeTest::register_message("local"));
  InterchangeTest::send(remote, InterchangeTest::register_message("remote"));
  auto r1 = InterchangeTest::receive(local), r2 = InterchangeTest::receive(remote);
  ASSERT_TRUE(r1 && std::holds_alternative<protocol::Registered>(*r1));
  ASSERT_TRUE(r2 && std::holds_alternative<protocol::Registered>(*r2));
  ASSERT_EQ(ix.pools().size(), 2u);
  ASSERT_TRUE(ix.hold("remote", true));  // the task must go to the local pool

  auto big = std::make_shared<std::string>(3 << 20, 'b');
  interchange::DispatchTask t;
  t.task_id = 7;
  t.kind = protocol::kKindShell;
  t.payload = protocol::encode_shell_payload({"true", "", true, "", true, 0});
  t.buffers = {{big, big->data(), big->size()}, {big, big->data() + 5, 10}};
  ix.submit({t});
  auto m = InterchangeTest::receive(local);
  ASSERT_TRUE(m && std::holds_alternative<protocol::Tasks>(*m));
  const auto& task = std::get<protocol::Tasks>(*m).tasks.at(0);
  EXPECT_EQ(task.task_id, 7u);
  ASSERT_EQ(task.buffers.size(), 2u);
  EXPECT_EQ(task.buffers[0].view(), *big);
  EXPECT_EQ(task.buffers[1].view(), std::string(10, 'b'));
  InterchangeTest::send(local, protocol::encode(protocol::PoolMessage{protocol::Results{{{7, 0, protocol::encode_exit_code(0)}}}}));
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline) {
    std::lock_guard lock(got.mutex);
    if (!got.done.empty()) break;
  }
  {
    std::lock_guard lock(got.mutex);
    ASSERT_EQ(got.done.size(), 1u);
    EXPECT_EQ(got.done[0].task_id, 7u);
  }
  // A pool on the Unix socket that dies is lost as soon as over TCP (the heartbeat threshold
  // is 120 s here).
  t.task_id = 8;
  t.buffers.clear();
  ix.submit({t});
  m = InterchangeTest::receive(local);
  ASSERT_TRUE(m && std::holds_alternative<protocol::Tasks>(*m));
  local.close();
  const auto lost_by = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < lost_by) {
    std::lock_guard lock(got.mutex);
    if (got.done.size() == 2) break;
  }
  {
    std::lock_guard lock(got.mutex);
    ASSERT_EQ(got.done.size(), 2u) << "the pool on the Unix socket was not lost when its connection closed";
    EXPECT_EQ(got.done[1].task_id, 8u);
    EXPECT_TRUE(got.done[1].manager_lost);
  }
  ix.stop();
  EXPECT_FALSE(std::filesystem::exists(sock));
  EXPECT_FALSE(std::filesystem::exists(sock.parent_path()));
  std::filesystem::remove_all(base);
}

// A pool killed (its connection closes) is lost after the short grace period, not after the
// heartbeat threshold (30 s here, longer than wait_done waits); the pool beside it, which stays
// connected, keeps its task. (A pool that reconnects in time: DispatcherTest.)
TEST_F(InterchangeTest, APoolWhoseConnectionClosesIsLostSoon) {
  auto stays = dealer("stays");
  auto gone = dealer("gone");
  for (auto* s : {&stays, &gone}) {
    send(*s, register_message(s == &stays ? "stays" : "gone"));
    auto reply = receive(*s);
    ASSERT_TRUE(reply && std::holds_alternative<protocol::Registered>(*reply));
  }
  std::vector<interchange::DispatchTask> tasks(2);
  for (std::uint64_t i = 0; i < 2; ++i) {
    tasks[i].task_id = i + 1;
    tasks[i].kind = protocol::kKindShell;
    tasks[i].payload = protocol::encode_shell_payload({"true", "", true, "", true, 0});
  }
  ix->submit(std::move(tasks));
  std::map<std::string, std::uint64_t> held;
  for (auto* s : {&stays, &gone}) {
    auto m = receive(*s);
    ASSERT_TRUE(m && std::holds_alternative<protocol::Tasks>(*m));
    held[s == &stays ? "stays" : "gone"] = std::get<protocol::Tasks>(*m).tasks.at(0).task_id;
  }
  gone.close();
  ASSERT_TRUE(wait_done(1)) << "the closed pool was not lost before the heartbeat threshold";
  {
    std::lock_guard lock(got.mutex);
    ASSERT_EQ(got.done.size(), 1u) << got.done.back().payload;
    EXPECT_EQ(got.done[0].task_id, held["gone"]);
    EXPECT_TRUE(got.done[0].manager_lost);
    EXPECT_NE(got.done[0].payload.find("pool gone on localhost (block 0) closed its connection"), std::string::npos)
        << got.done[0].payload;
  }
  const auto pools = ix->pools();
  ASSERT_EQ(pools.size(), 1u);
  EXPECT_EQ(pools[0].pool_id, "stays");
  EXPECT_EQ(pools[0].in_flight, 1u);
}

// ---- misbehaving pools on real connections (the Dispatcher's own tests: test_dispatcher_scale)

// A pool speaking ZMTP 3.0 by hand on a raw TCP connection (NULL mechanism, as a DEALER), so
// that it can do what a ZeroMQ socket never does: stop in the middle of a frame.
class RawPool {
 public:
  RawPool(int port, const std::string& identity) : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    std::string greeting(64, '\0');
    greeting[0] = '\xFF';
    greeting[9] = '\x7F';
    greeting[10] = 3;  // version 3.0
    greeting.replace(12, 4, "NULL");
    // Greetings both ways, then READY both ways (the interchange's: a short command frame).
    write(greeting);
    connected_ = connected_ && read(64).size() == 64;
    std::string ready = std::string("\x05READY", 6) + property("Socket-Type", "DEALER") + property("Identity", identity);
    write(std::string{'\x04', static_cast<char>(ready.size())} + ready);
    const std::string header = read(2);
    connected_ = connected_ && header.size() == 2 && header[0] == '\x04' &&
                 read(static_cast<unsigned char>(header[1])).size() == static_cast<unsigned char>(header[1]);
  }
  ~RawPool() { close(); }
  bool connected() const { return connected_; }
  // One frame (`more`: another follows); `cut`: only that many bytes of its body are sent.
  void frame(const std::string& body, bool more, std::size_t cut = std::string::npos) {
    std::string header{static_cast<char>(more ? 0x03 : 0x02)};  // long frames: an 8-byte size
    for (int shift = 56; shift >= 0; shift -= 8) header += static_cast<char>((body.size() >> shift) & 0xFF);
    write(header + body.substr(0, cut));
  }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  static std::string property(const std::string& name, const std::string& value) {
    std::string p{static_cast<char>(name.size())};
    p += name;
    for (int shift = 24; shift >= 0; shift -= 8) p += static_cast<char>((value.size() >> shift) & 0xFF);
    return p + value;
  }
  // `n` bytes, or fewer if the connection ends or 10 s pass.
  std::string read(std::size_t n) {
    std::string out;
    while (connected_ && out.size() < n) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 10000) != 1) break;
      char buf[256];
      const ssize_t got = ::recv(fd_, buf, std::min(sizeof buf, n - out.size()), 0);
      if (got <= 0) break;
      out.append(buf, static_cast<std::size_t>(got));
    }
    return out;
  }
  void write(const std::string& bytes) {
    if (!connected_) return;
    for (std::size_t done = 0; done < bytes.size();) {
      const ssize_t n = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
      if (n <= 0) return;
      done += static_cast<std::size_t>(n);
    }
  }
  int fd_;
  bool connected_ = false;
};

// A pool that vanishes in the middle of a message (a whole first frame, then half of the
// next) is lost once its connection is gone; the half message reaches no one, and the other
// pool keeps working.
TEST_F(InterchangeTest, APoolVanishingMidFrameIsLostAndTheOtherKeepsWorking) {
  auto good = dealer("good");
  send(good, register_message("good"));
  ASSERT_TRUE(receive(good));
  RawPool raw(ix->port(), "raw");
  ASSERT_TRUE(raw.connected()) << "no ZMTP handshake with the interchange";
  raw.frame(register_message("raw"), false);
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (ix->pools().size() < 2 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  ASSERT_EQ(ix->pools().size(), 2u) << "the raw pool did not register";

  std::vector<interchange::DispatchTask> tasks(2);
  for (std::uint64_t i = 0; i < 2; ++i) {
    tasks[i].task_id = i + 1;
    tasks[i].kind = protocol::kKindShell;
    tasks[i].payload = protocol::encode_shell_payload({"true", "", true, "", true, 0});
  }
  ix->submit(std::move(tasks));  // one each: both pools have one worker
  auto m = receive(good);
  ASSERT_TRUE(m && std::holds_alternative<protocol::Tasks>(*m));
  const std::uint64_t on_good = std::get<protocol::Tasks>(*m).tasks.at(0).task_id;
  const std::string results =
      protocol::encode(protocol::PoolMessage{protocol::Results{{{3 - on_good, 0, protocol::encode_exit_code(0)}}}});
  raw.frame(results, true);
  raw.frame(results, false, results.size() / 2);
  raw.close();

  ASSERT_TRUE(wait_done(1)) << "the vanished pool's task did not fail";
  {
    std::lock_guard lock(got.mutex);
    ASSERT_EQ(got.done.size(), 1u);
    EXPECT_EQ(got.done[0].task_id, 3 - on_good);
    EXPECT_TRUE(got.done[0].manager_lost) << "the half-sent results must not count";
  }
  send(good, protocol::encode(protocol::PoolMessage{protocol::Results{{{on_good, 0, protocol::encode_exit_code(0)}}}}));
  ASSERT_TRUE(wait_done(2));
  {
    std::lock_guard lock(got.mutex);
    EXPECT_EQ(got.done[1].task_id, on_good);
    EXPECT_FALSE(got.done[1].manager_lost);
  }
  const auto pools = ix->pools();
  ASSERT_EQ(pools.size(), 1u);
  EXPECT_EQ(pools[0].pool_id, "good");
}

// A second connection with the identity of a registered pool cannot take its place: the
// first goes on getting tasks and finishing them; there is still one pool.
TEST_F(InterchangeTest, ASecondConnectionWithAnIdentityInUseDoesNotDisturbTheFirst) {
  auto first = dealer("same");
  send(first, register_message("same"));
  ASSERT_TRUE(receive(first));
  auto second = dealer("same");
  send(second, register_message("same"));
  send(second, protocol::encode(protocol::PoolMessage{protocol::Results{{{7, 0, protocol::encode_exit_code(0)}}}}));
  for (std::uint64_t id : {7, 8}) {
    interchange::DispatchTask t;
    t.task_id = id;
    t.kind = protocol::kKindShell;
    t.payload = protocol::encode_shell_payload({"true", "", true, "", true, 0});
    ix->submit({t});
    std::optional<protocol::InterchangeMessage> m;
    do {
      m = receive(first);
    } while (m && !std::holds_alternative<protocol::Tasks>(*m));
    ASSERT_TRUE(m) << "the first connection got no task " << id;
    EXPECT_EQ(std::get<protocol::Tasks>(*m).tasks.at(0).task_id, id);
    send(first, protocol::encode(protocol::PoolMessage{protocol::Results{{{id, 0, protocol::encode_exit_code(0)}}}}));
    ASSERT_TRUE(wait_done(id - 6));
  }
  {
    std::lock_guard lock(got.mutex);
    ASSERT_EQ(got.done.size(), 2u) << "a task completed twice";
    EXPECT_EQ(got.done[0].task_id, 7u);
    EXPECT_EQ(got.done[1].task_id, 8u);
  }
  EXPECT_EQ(ix->pools().size(), 1u);
}

// Shell tasks for a pool of one worker (the tests of the short-task bonus).
std::vector<interchange::DispatchTask> true_commands(std::size_t n) {
  std::vector<interchange::DispatchTask> tasks(n);
  for (std::uint64_t i = 0; i < tasks.size(); ++i) {
    tasks[i].task_id = i;
    tasks[i].kind = protocol::kKindShell;
    tasks[i].payload = protocol::encode_shell_payload({"true", "", true, "", true, 0});
  }
  return tasks;
}

// The run time a pool reports in RESULTS decides whether its tasks are short (10 ms limit):
// a task that ran longer counts as slow however soon its result comes back, and its pool of
// one worker keeps getting one task at a time (Parsl's load balance for long tasks).
TEST_F(InterchangeTest, APoolWhoseTasksTakeLongerThanTheShortLimitGetsOneTaskPerWorker) {
  auto pool = dealer("slow");
  send(pool, register_message("slow"));
  ASSERT_TRUE(receive(pool));
  ix->submit(true_commands(20));
  for (int round = 0; round < 4; ++round) {
    auto m = receive(pool);
    ASSERT_TRUE(m && std::holds_alternative<protocol::Tasks>(*m)) << "round " << round;
    const auto& batch = std::get<protocol::Tasks>(*m).tasks;
    ASSERT_EQ(batch.size(), 1u) << "round " << round << ": a pool of slow tasks got the short-task bonus";
    send(pool, protocol::encode(protocol::PoolMessage{
                   protocol::Results{{{batch[0].task_id, 0, protocol::encode_exit_code(0), {}, 30ms}}}}));
  }
}

// ...and a task that ran briefly counts as short however long its result took to come back
// (with 10,000 pools, seconds): its pool gets the bonus, 1 worker + 16 tasks in one message.
TEST_F(InterchangeTest, AQuickTaskWithALongRoundTripKeepsTheShortTaskBonus) {
  auto pool = dealer("quick");
  send(pool, register_message("quick"));
  ASSERT_TRUE(receive(pool));
  ix->submit(true_commands(40));
  auto m = receive(pool);
  ASSERT_TRUE(m && std::holds_alternative<protocol::Tasks>(*m));
  const std::uint64_t first = std::get<protocol::Tasks>(*m).tasks.at(0).task_id;
  ASSERT_EQ(std::get<protocol::Tasks>(*m).tasks.size(), 1u) << "nothing known of its tasks yet";
  // The round trip: three times the limit (the interchange timed round trips before version 11).
  std::this_thread::sleep_for(30ms);
  send(pool, protocol::encode(protocol::PoolMessage{
                 protocol::Results{{{first, 0, protocol::encode_exit_code(0), {}, 5us}}}}));
  m = receive(pool);
  ASSERT_TRUE(m && std::holds_alternative<protocol::Tasks>(*m));
  EXPECT_EQ(std::get<protocol::Tasks>(*m).tasks.size(), 17u);
}

// Commands run in order across rounds: a submission larger than one round's share is whole
// before a later command runs, and cancelling it all answers every task.
TEST_F(InterchangeTest, ALargeSubmissionIsQueuedWholeBeforeLaterCommands) {
  constexpr std::uint64_t kTasks = 200'000;
  std::vector<interchange::DispatchTask> tasks(kTasks);
  std::vector<std::uint64_t> ids(kTasks);
  for (std::uint64_t i = 0; i < kTasks; ++i) {
    tasks[i].task_id = ids[i] = i;
    tasks[i].kind = protocol::kKindShell;
    tasks[i].payload = "p";
  }
  ix->submit(std::move(tasks));
  EXPECT_EQ(ix->outstanding(), kTasks);
  ix->cancel(std::move(ids));
  EXPECT_EQ(ix->outstanding(), 0u);
  ASSERT_TRUE(wait_done(kTasks));
  std::lock_guard lock(got.mutex);
  EXPECT_EQ(got.done.size(), kTasks);
  EXPECT_TRUE(std::all_of(got.done.begin(), got.done.end(),
                          [](const Completed& c) { return c.status == protocol::kStatusCancelled; }));
}

TEST_F(InterchangeTest, StopSendsShutdownToPools) {
  auto pool = dealer("p");
  send(pool, register_message("p"));
  ASSERT_TRUE(receive(pool));
  ix->stop();
  auto m = receive(pool);
  ASSERT_TRUE(m);
  EXPECT_TRUE(std::holds_alternative<protocol::Shutdown>(*m));
}

}  // namespace
