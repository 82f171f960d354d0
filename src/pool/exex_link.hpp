#pragma once
// pervade-exex-pool's messages over MPI (MPI_COMM_WORLD, one tag): non-blocking sends whose
// buffers are kept until MPI is done with them, and receives of whatever has arrived. Nothing
// here ever blocks on one peer, so a rank that dies cannot stall the others: MPICH (ch4:ucx)
// aborts a process whose blocking call involves a dead peer, but lets a pending send to it,
// and polling for messages from any rank, go on (docs/mpi.md, "A lost rank").
// One thread per process (the one that called MPI_Init_thread with MPI_THREAD_SERIALIZED, or
// rank 0's bridge thread) calls it.
#include <mpi.h>

#include <time.h>

#include <chrono>
#include <deque>
#include <optional>
#include <string>
#include <utility>

namespace pervade::pool::exex {

// How long a rank's polling loop sleeps in ppoll() before it looks for MPI messages again:
// nothing wakes a thread when an MPI message arrives, so the loops poll. While messages flow it
// does not sleep at all (a nap of even 50 us per round cost 40% of the no-op throughput,
// BENCHMARKS.md); when they stop, the nap doubles from 10 us up to kIdle, so an idle rank wakes
// about a thousand times a second.
class Nap {
 public:
  static constexpr std::chrono::microseconds kIdle{1000};
  timespec next(bool busy) {
    nap_ = busy ? std::chrono::microseconds(0) : std::min(kIdle, std::max(std::chrono::microseconds(10), nap_ * 2));
    return timespec{0, static_cast<long>(std::chrono::nanoseconds(nap_).count())};
  }

 private:
  std::chrono::microseconds nap_{0};
};

class RankLink {
 public:
  RankLink();
  int rank() const { return rank_; }
  int size() const { return size_; }
  // Queues `bytes` for `to`; MPI sends them in the background (progress() reclaims them).
  void send(int to, std::string bytes);
  // The next message that has arrived (its sender and bytes), or nullopt.
  std::optional<std::pair<int, std::string>> receive();
  // Frees the buffers of finished sends; returns how many sends are still under way.
  std::size_t progress();
  // Gives up on the sends under way to a lost rank: they are never completed; their buffers are
  // kept until exit, as MPI may still read them.
  void forget(int rank);

 private:
  struct Sending {
    int to;
    MPI_Request request;
    std::string bytes;
  };
  int rank_ = 0;
  int size_ = 1;
  std::deque<Sending> sending_;
  std::deque<Sending> abandoned_;
};

}  // namespace pervade::pool::exex
