#pragma once
// LogObserver: the engine's log. Turns the event stream (observer.hpp) into log records: lines
// in Parsl's layout (or JSON lines) in a file such as run_dir/NNN/pervade.log, and, for Python
// handlers that want them, batches of records handed to a sink (docs/logging.md).
//
// Threads: any thread may call the on_* methods, write_line, flush and close (they copy the
// event into a buffer under one short lock and return); one writer thread of its own formats
// the records, writes the file and calls the sink. The sink runs on that writer thread only.
#include <chrono>
#include <ctime>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "pervade/observer.hpp"

namespace pervade {

// Python's level numbers, so that levels mean the same on both sides.
namespace log_level {
inline constexpr int kDebug = 10;
inline constexpr int kInfo = 20;
inline constexpr int kWarning = 30;
inline constexpr int kError = 40;
inline constexpr int kOff = 1000;  // above every level: nothing passes
}  // namespace log_level

// One engine log record, as the sink receives it.
struct LogEntry {
  EventTime time;
  int level;
  std::string_view logger;    // "pervade.dataflow.dflow" (tasks, workflow) or "pervade.executors"
  std::string_view function;  // what made it: "submit", "update_task_state", "dependency", ...
  std::string message;
  // Parsl's extras ("parsl.task", "parsl.try_id", ...), values as text.
  std::vector<std::pair<std::string_view, std::string>> extras;
};

struct LogObserverOptions {
  enum class Format : std::uint8_t { text, json_lines };
  std::string path;                   // the log file (appended to); "" writes no file
  Format format = Format::text;
  int level = log_level::kDebug;      // records below it are not written to the file
  // Records at or above forward_level go to sink (in batches, on the writer thread).
  int forward_level = log_level::kOff;
  std::function<void(std::vector<LogEntry>&)> sink;
  std::chrono::milliseconds flush_interval{100};  // how long a record may wait in memory
  std::string process_name = "MainProcess";
};

namespace detail {
// Python's asctime with datefmt "%Y-%m-%d %H:%M:%S" (local time), cached per second: a writer
// formats many records per second. With `tail`, the text that follows it in every line of this
// process (" MainProcess-42 engine-0 ").
class AscTime {
 public:
  explicit AscTime(std::string tail = {}) : tail_(std::move(tail)) {}
  std::string_view operator()(EventTime t) { return update(t).substr(0, size_); }
  std::string_view with_tail(EventTime t) { return update(t); }

 private:
  std::string_view update(EventTime t);
  std::string tail_;
  std::time_t second_ = -1;
  std::string text_;
  std::size_t size_ = 0;
};
}  // namespace detail

// Formats records in the engine log's layouts: a line of Parsl's DEFAULT_FORMAT (the engine is
// thread "engine", line 0), or a JSON object with the keys of Parsl's JSONLogging. One per
// writer thread (LogObserver's, the monitoring database's): not thread-safe.
class LogFormatter {
 public:
  struct Extra {
    std::string_view key, value;
  };
  LogFormatter(LogObserverOptions::Format format, std::string_view process_name);
  // Appends one record and its newline to out. Extras are Parsl's ("parsl.task", ...), as text;
  // dfk, when not "", is added to a JSON record as "parsl.dfk" (text lines leave the run id out).
  void append(fmt::memory_buffer& out, EventTime time, int level, std::string_view logger, std::string_view function,
              std::string_view message, std::span<const Extra> extras, std::string_view dfk = {});

 private:
  LogObserverOptions::Format format_;
  std::string process_name_;
  int pid_;
  detail::AscTime asctime_;
};

class LogObserver final : public Observer {
 public:
  // Opens the file (throws std::system_error if it cannot) and starts the writer thread.
  explicit LogObserver(LogObserverOptions options);
  ~LogObserver() override;  // stop()s
  LogObserver(const LogObserver&) = delete;
  LogObserver& operator=(const LogObserver&) = delete;

  void on_workflow(const WorkflowEvent& e) override;
  void on_task(const TaskEvent& e) override;
  void on_try(const TryEvent& e) override;
  void on_block(const BlockEvent& e) override;
  void on_pool(const PoolEvent& e) override;
  // The kernel's end: everything recorded so far is written (the observer stays usable).
  void close() override { flush(); }

  // A line formatted elsewhere (Python records) goes into the file in order with the events.
  void write_line(std::string_view line);
  // A record that is not an event (the monitoring database's troubles, say), formatted as the
  // events are and forwarded to Python as they are.
  void record(int level, std::string_view logger, std::string_view function, std::string_view message);
  // Blocks until everything recorded before the call is written and handed to the sink.
  void flush();
  // Writes what is left, ends the writer thread and closes the file; later events are ignored.
  // Idempotent. Call it where the sink cannot be waiting for something the caller holds (the
  // Python binding calls it without the GIL).
  void stop();
  // The lowest level anything is recorded at (the file's or the sink's).
  int threshold() const { return threshold_; }

 private:
  enum class Kind : std::uint8_t {
    workflow_started, workflow_ended, checkpointed, task_submitted, task_state, task_dependency, attempt, block,
    pool_joined, pool_heartbeat, pool_left, line, message
  };
  struct Text {  // a string copied into the arena
    std::uint32_t offset = 0, size = 0;
  };
  // An event as recorded on the caller's thread: fixed fields plus its strings in the arena.
  struct Pending {
    Kind kind;
    TaskState state = TaskState::pending;
    std::int16_t level;
    EventTime time;
    std::uint64_t task = 0, dependency = 0;
    std::uint32_t try_id = 0;
    int count_a = 0, count_b = 0;  // tasks completed/failed, fail_count, workers/cpus
    std::uint64_t number = 0;      // pool memory
    Text text[6];
  };
  struct Batch {
    std::vector<Pending> records;
    std::string arena;
    void clear() { records.clear(); arena.clear(); }
  };

  bool wanted(int level) const { return level >= threshold_; }
  // Under mutex_: a new record of this kind (nullptr once the buffer is full: counted as dropped).
  Pending* add(Kind kind, int level, EventTime time);
  Text put(std::string_view s);
  void committed();  // under mutex_: wakes the writer if the buffer holds a batch's worth
  void run();
  void write_batch(Batch& batch);
  // What a record says, without allocating: logger, function, extras (their numbers' text kept
  // here), the message appended to a buffer.
  struct Described {
    std::string_view logger, function;
    LogFormatter::Extra extras[6];
    int count = 0;
    char numbers[3][24];
    void add(std::string_view key, std::string_view value) { extras[count++] = {key, value}; }
    std::string_view number(int slot, std::uint64_t value);
  };
  void describe(const Pending& p, std::string_view arena, fmt::memory_buffer& message, Described& d) const;
  void write_out(std::string_view bytes);

  LogObserverOptions options_;
  int threshold_;
  int fd_ = -1;
  std::string run_id_;  // writer thread: from the workflow's start (JSON lines: parsl.dfk)

  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable written_;
  Batch pending_;
  std::uint64_t dropped_ = 0;
  std::uint64_t recorded_ = 0;  // records (including dropped) accepted so far
  std::uint64_t done_ = 0;      // records written so far
  bool flush_asked_ = false;
  bool stopping_ = false;
  bool write_failed_ = false;   // reported once on stderr, then the file is given up
  std::thread writer_;
};

}  // namespace pervade
