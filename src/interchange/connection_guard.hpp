#pragma once
// Keeps a flood of TCP connections from taking the driver's file descriptors. Anyone who can
// reach the interchange's port may open connections (with CurveZMQ none gets past the
// handshake, but each holds a descriptor until the handshake times out); past a cap, the
// guard closes each new one as libzmq reports it, so descriptors stay for the provider, the
// logs, the same-host pools and the user's code. Only the interchange thread calls it.
#include <cstddef>
#include <unordered_set>

namespace pervade::interchange {

// Raises this process's soft RLIMIT_NOFILE towards kFdLimitTarget (at most the hard limit,
// never lowering it); returns the soft limit in force. Not higher: the processes it starts
// (pools, workers, the tasks' programs) inherit it, and some programs close every possible
// descriptor one by one.
constexpr long kFdLimitTarget = 1L << 16;
long raise_fd_limit();

class ConnectionGuard {
 public:
  // Descriptors kept out of the TCP connections' reach, whatever the limit (at least).
  static constexpr long kMinReserve = 256;
  // The cap for a process allowed fd_limit descriptors: all but max(kMinReserve, 1/8) of them.
  static std::size_t cap_for(long fd_limit);
  // The descriptors kept out of the cap: max(kMinReserve, fd_limit / 8).
  static long reserve_for(long fd_limit);

  // port: the interchange's TCP port (a descriptor whose local port it is was accepted there).
  ConnectionGuard(int port, std::size_t cap) : port_(port), cap_(cap) {}

  // A socket monitor event of the TCP socket: ZMQ_EVENT_ACCEPTED (value: the new descriptor)
  // or ZMQ_EVENT_DISCONNECTED (value: the closed one); others are ignored.
  void on_event(int event, int value);

  std::size_t open() const { return open_.size(); }
  std::size_t cap() const { return cap_; }
  std::size_t closed() const { return closed_; }  // connections closed for being over the cap

 private:
  bool accepted_here(int fd) const;

  int port_;
  std::size_t cap_;
  std::unordered_set<int> open_;
  std::size_t closed_ = 0;
  bool warned_ = false;  // one warning per flood
};

}  // namespace pervade::interchange
