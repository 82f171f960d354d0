#include "interchange/connection_guard.hpp"

#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <zmq.h>

#include <algorithm>
#include <cstdio>

namespace pervade::interchange {

long raise_fd_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return 1024;
  const rlim_t target = std::min<rlim_t>(limit.rlim_max, kFdLimitTarget);
  if (limit.rlim_cur < target) {
    rlimit raised = limit;
    raised.rlim_cur = target;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
  }
  // RLIM_INFINITY (or absurd values) still cannot exceed the kernel's nr_open: any big value
  // leaves the cap far above what a flood can reach before its handshakes time out.
  return limit.rlim_cur == RLIM_INFINITY ? (1L << 20) : static_cast<long>(std::min<rlim_t>(limit.rlim_cur, 1L << 30));
}

long ConnectionGuard::reserve_for(long fd_limit) { return std::max(kMinReserve, fd_limit / 8); }

std::size_t ConnectionGuard::cap_for(long fd_limit) {
  return static_cast<std::size_t>(std::max(16L, fd_limit - reserve_for(fd_limit)));
}

bool ConnectionGuard::accepted_here(int fd) const {
  // The monitor's event arrives after the fact: the descriptor may have been closed and its
  // number reused meanwhile. Only a TCP socket whose local port is the interchange's was
  // accepted by its listener (no other socket of this process can hold that port).
  sockaddr_storage address{};
  socklen_t size = sizeof address;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size) != 0) return false;
  if (address.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&address)->sin_port) == port_;
  if (address.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&address)->sin6_port) == port_;
  return false;
}

void ConnectionGuard::on_event(int event, int value) {
  if (event == ZMQ_EVENT_DISCONNECTED) {
    open_.erase(value);
    if (open_.size() < cap_ / 2) warned_ = false;
    return;
  }
  if (event != ZMQ_EVENT_ACCEPTED) return;
  if (open_.size() < cap_) {
    open_.insert(value);
    return;
  }
  // Over the cap: libzmq sees the end of the stream and closes the connection (and reports
  // it disconnected). Established pools are never touched, only the newest connection.
  if (accepted_here(value) && ::shutdown(value, SHUT_RDWR) == 0) ++closed_;
  if (!warned_) {
    warned_ = true;
    std::fprintf(stderr,
                 "pervade: interchange port %d: %zu TCP connections are open, the most this process allows "
                 "(its descriptor limit less a reserve); new connections are closed until some end. A flood of "
                 "connections that never register?\n",
                 port_, open_.size());
  }
}

}  // namespace pervade::interchange
