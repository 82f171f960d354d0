#pragma once
// Rank 0 of pervade-exex-pool: the pool's RemoteWorkers. Each remote worker's byte stream is a
// socketpair: the pool has one end, as for a worker of its own; a bridge thread (the only one
// that calls MPI after MPI_Init) moves bytes between the other end and the worker's rank, sends
// start and signal requests, and reports when a worker ended or its rank was lost.
// The pool's main thread calls the RemoteWorkers methods; main() constructs it (after MPI_Init)
// and calls stop() after run_pool() returned.
#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "pool/exex_link.hpp"
#include "pool/exex_remote.hpp"
#include "pool/exex_wire.hpp"
#include "util/fd.hpp"

namespace pervade::pool::exex {

using Clock = std::chrono::steady_clock;

// How the ranks watch each other: each sends `alive` every `period` while it has nothing else
// to send; a rank silent for `threshold` is lost.
struct Liveness {
  Clock::duration period = std::chrono::seconds(1);
  Clock::duration threshold = std::chrono::seconds(120);
};

// "rank 0 ...": one line on stderr (the block's log), for the parts outside the pool's logger.
void log_line(int rank, const std::string& text);

class Bridge final : public RemoteWorkers {
 public:
  // Waits (up to liveness.threshold) for every other rank's hello; throws if one does not come.
  Bridge(RankLink& link, Liveness liveness);
  ~Bridge() override;

  const std::vector<RemoteNode>& nodes() const override { return nodes_; }
  std::string where(int slot) const override;
  void set_wake_fd(int fd) override { wake_fd_ = fd; }
  detail::Fd start(int slot, std::vector<std::string> argv, std::vector<std::string> env, std::string* error) override;
  void signal(int slot, int sig, bool stop_commands) override;
  std::optional<std::string> exited(int slot) override;
  bool lost(int slot) override;

  // Tells every rank still there to stop its workers and waits for their answers (at most
  // `timeout`); joins the bridge thread. True when every rank answered: all may call MPI_Finalize.
  bool stop(Clock::duration timeout);

 private:
  struct Slot {
    int rank = 0;
    std::uint32_t index = 0;  // on its rank
    detail::Fd fd;            // the bridge's end
    std::string out;          // bytes for the pool, not yet written
    std::size_t out_offset = 0;
    std::optional<std::string> ending;  // how it ended, reported once `out` is written
  };
  struct Command {
    enum { start, signal } kind;
    int slot;
    detail::Fd fd;
    Message message;
  };

  void run();
  void apply(Command& c);
  void on_message(int from, std::string bytes);
  bool read_slot(int slot);   // true if it read anything
  void write_slot(Slot& s);
  void end_slot(int slot, std::string how);  // reported once its bytes are written
  void lose_rank(int rank, const std::string& why);
  void send(int rank, const Message& m);
  void flush(int rank);  // batches_[rank], if anything
  void wake_pool();

  RankLink& link_;
  Liveness liveness_;
  std::vector<RemoteNode> nodes_;
  std::vector<int> first_slot_;  // by rank: its first slot (ranks >= 1)
  std::vector<Slot> slots_;      // the bridge thread's
  std::vector<Clock::time_point> last_heard_, last_sent_;  // by rank
  std::vector<bool> rank_lost_;
  std::vector<DataBatch> batches_;  // by rank: this round's bytes for its workers
  int wake_fd_ = -1;
  detail::Fd bridge_wake_;  // eventfd: commands for the bridge thread

  std::mutex mu_;
  std::deque<Command> commands_;
  std::vector<std::optional<std::string>> exited_;  // by slot
  std::vector<bool> slot_lost_;
  bool stopping_ = false;
  bool finalize_ = false;  // stop(): the bridge thread ends
  std::condition_variable stopped_cv_;
  int stopped_ranks_ = 0;  // answered `stopped`
  int lost_ranks_ = 0;
  std::thread thread_;
};

}  // namespace pervade::pool::exex
