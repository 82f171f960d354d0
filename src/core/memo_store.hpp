#pragma once
// The memo table and its checkpoint file. Single-threaded: only the DataFlowKernel's reactor
// (through KernelCore) or a unit test may call it.
//
// Results are kept as serialized bytes under a fixed-size key (a digest the front end computes
// from the function and its arguments). A checkpoint is a SQLite database in WAL mode with
// synchronous=OFF: a committed transaction is in the operating system once COMMIT returns, so
// it survives the process being killed at any moment (not a power failure). See
// docs/checkpoints.md for why this store was chosen.
#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <exception>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "pervade/dataflow_kernel.hpp"

struct sqlite3;
struct sqlite3_stmt;

namespace pervade::detail {

using MemoKey = std::array<unsigned char, kMemoKeySize>;

struct MemoKeyHash {
  std::size_t operator()(const MemoKey& k) const noexcept {
    std::size_t h;  // the key is already a digest: its first bytes are a good hash
    std::memcpy(&h, k.data(), sizeof h);
    return h;
  }
};

// Turns the bytes a front end gives into a key; throws ConfigurationError if the size is wrong.
MemoKey to_memo_key(const std::string& bytes);

class MemoStore {
 public:
  // Loads every file of config.checkpoint_files, then opens config.checkpoint_dir/tasks.db for
  // writing when a checkpoint mode is set. Throws BadCheckpoint naming the file that cannot be
  // read (missing, not a pervade checkpoint, corrupt record).
  explicit MemoStore(const CheckpointConfig& config);
  ~MemoStore();
  MemoStore(const MemoStore&) = delete;
  MemoStore& operator=(const MemoStore&) = delete;

  // The stored result bytes, or nullptr.
  const std::string* find(const MemoKey& key) const;
  // Adds a result to the table and, when checkpointing, to the records of the next write.
  void record(const MemoKey& key, std::string bytes);
  // As Parsl, a task that failed is memoized too, in memory only (never checkpointed): a later
  // call with its key fails with the same exception, unless a result for the key is stored.
  const std::exception_ptr* find_failure(const MemoKey& key) const;
  // A stored result a task was answered with goes into this run's checkpoint too (as Parsl
  // writes every memo hit), so the last run's checkpoint alone holds every result it used.
  void record_recalled(const MemoKey& key);
  void record_failure(const MemoKey& key, std::exception_ptr error);
  // Writes the records gathered since the last write in one transaction; returns how many.
  // An I/O error is reported on stderr once and checkpointing stops (the results stay in the
  // in-memory table): losing a checkpoint must not fail the tasks that produced it.
  std::size_t write();
  bool has_unwritten() const { return !unwritten_.empty(); }
  // Ends checkpointing (also done by the destructor): folds the write-ahead log into tasks.db
  // and leaves it in rollback-journal mode, so that the file alone holds every result and a
  // reader can open it without writing (docs/checkpoints.md). Call write() first.
  void close();

  CheckpointMode mode() const { return config_.mode; }
  std::size_t size() const { return table_.size(); }
  // Periodic mode: when the next write is due (time_point::max() otherwise).
  std::chrono::steady_clock::time_point next_write() const { return next_write_; }
  void schedule_next(std::chrono::steady_clock::time_point now);

  // The file this run writes: <checkpoint_dir>/tasks.db.
  static std::string file_in(const std::string& dir);
  // One record of Parsl's checkpoint file (tasks.pkl): a pickle of {'hash': hex(key),
  // 'exception': None, 'result': pickle.loads(value)}, where value is itself a pickle.
  static std::string parsl_pickle_record(const MemoKey& key, const std::string& value);

 private:
  void load(const std::string& path);
  void append_parsl_pickles();
  void open_for_writing();
  static void create_file(const std::string& path);
  sqlite3* open_to_read(const std::string& path);

  CheckpointConfig config_;
  std::unordered_map<MemoKey, std::string, MemoKeyHash> table_;
  std::unordered_map<MemoKey, std::exception_ptr, MemoKeyHash> failures_;
  std::vector<MemoKey> unwritten_;  // keys whose bytes are in table_ but not yet in the file
  std::unordered_set<MemoKey, MemoKeyHash> in_this_run_;  // keys this run's file has or will have
  sqlite3* db_ = nullptr;
  sqlite3_stmt* insert_ = nullptr;
  bool broken_ = false;
  bool pickle_copy_broken_ = false;  // tasks.pkl could not be written: said once, then not tried
  std::chrono::steady_clock::time_point next_write_ = std::chrono::steady_clock::time_point::max();
};

}  // namespace pervade::detail
