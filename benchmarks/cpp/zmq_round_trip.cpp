// The floor under any HighThroughputExecutor latency on this machine: the round trip of a small
// message between two processes over ZeroMQ on TCP loopback, ROUTER <-> DEALER as between the
// interchange and a pool, without encryption, Python or pervade code. A chain link of HTEX tasks
// crosses this link twice (driver -> pool -> worker -> pool -> driver), so it cannot be faster.
//
//   build/benchmarks/cpp/zmq_round_trip [round trips, default 20000]
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include <zmq.hpp>

int main(int argc, char** argv) {
  const int n = argc > 1 ? std::max(10, std::atoi(argv[1])) : 20000;
  zmq::context_t ctx;
  zmq::socket_t router(ctx, zmq::socket_type::router);
  router.bind("tcp://127.0.0.1:*");
  const std::string endpoint = router.get(zmq::sockopt::last_endpoint);
  const pid_t child = ::fork();
  if (child == 0) {  // the "pool": echoes every message
    zmq::context_t child_ctx;
    zmq::socket_t dealer(child_ctx, zmq::socket_type::dealer);
    dealer.connect(endpoint);
    dealer.send(zmq::str_buffer("hello"));
    for (;;) {
      zmq::message_t m;
      if (!dealer.recv(m) || m.size() == 1) break;
      dealer.send(m, zmq::send_flags::none);
    }
    std::_Exit(0);
  }
  zmq::message_t identity, body;
  (void)router.recv(identity);
  (void)router.recv(body);
  std::vector<double> us;
  us.reserve(n);
  for (int i = 0; i < n; ++i) {
    const auto start = std::chrono::steady_clock::now();
    router.send(zmq::buffer(identity.data(), identity.size()), zmq::send_flags::sndmore);
    router.send(zmq::str_buffer("a task of about thirty bytes"));
    (void)router.recv(identity);
    (void)router.recv(body);
    us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count());
  }
  router.send(zmq::buffer(identity.data(), identity.size()), zmq::send_flags::sndmore);
  router.send(zmq::str_buffer("x"));
  ::waitpid(child, nullptr, 0);
  std::sort(us.begin(), us.end());
  std::printf("ZeroMQ TCP loopback round trip over %d: median %.1f us, p10 %.1f us, min %.1f us\n", n, us[n / 2],
              us[n / 10], us[0]);
}
