#include "observe/log_observer.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <system_error>

#include <fmt/compile.h>
#include <fmt/format.h>

#include "util/thread_name.hpp"

namespace pervade {
namespace {

// Past this many records in memory new ones are dropped (and counted): an observer must not
// block its caller, and a writer that cannot keep up must not take all the memory.
constexpr std::size_t kMaxPending = 1u << 21;
// The writer is woken early when this many records wait, so batches stay small.
constexpr std::size_t kWakeAt = 8192;

constexpr std::string_view kDataflowLogger = "pervade.dataflow.dflow";
constexpr std::string_view kExecutorsLogger = "pervade.executors";
constexpr std::string_view kMemoizationLogger = "pervade.dataflow.memoization";

std::string_view level_name(int level) {
  if (level >= log_level::kError) return "ERROR";
  if (level >= log_level::kWarning) return "WARNING";
  if (level >= log_level::kInfo) return "INFO";
  return "DEBUG";
}

// The level a task's new state is logged at: every change is DEBUG, failures are more.
int state_level(TaskState s) {
  switch (s) {
    case TaskState::failed: return log_level::kError;
    case TaskState::dep_fail:
    case TaskState::fail_retryable: return log_level::kInfo;
    default: return log_level::kDebug;
  }
}

void append_json_string(fmt::memory_buffer& out, std::string_view s) {
  out.push_back('"');
  for (char c : s) {
    switch (c) {
      case '"': out.append(std::string_view("\\\"")); break;
      case '\\': out.append(std::string_view("\\\\")); break;
      case '\n': out.append(std::string_view("\\n")); break;
      case '\r': out.append(std::string_view("\\r")); break;
      case '\t': out.append(std::string_view("\\t")); break;
      default:
        if (static_cast<unsigned char>(c) < 0x20)
          fmt::format_to(fmt::appender(out), "\\u{:04x}", static_cast<unsigned>(c));
        else
          out.push_back(c);
    }
  }
  out.push_back('"');
}

// Appends what Python's "%(created)f" gives: seconds, a dot, six digits of microseconds.
void append_created(fmt::memory_buffer& out, EventTime t) {
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
  const fmt::format_int seconds(us / 1000000);
  out.append(std::string_view(seconds.data(), seconds.size()));
  char fraction[7] = {'.'};
  for (int i = 6, rest = static_cast<int>(us % 1000000); i > 0; --i, rest /= 10)
    fraction[i] = static_cast<char>('0' + rest % 10);
  out.append(std::string_view(fraction, sizeof fraction));
}

}  // namespace

std::string_view detail::AscTime::update(EventTime t) {
  const std::time_t s = std::chrono::system_clock::to_time_t(t);
  if (s != second_) {
    std::tm tm{};
    localtime_r(&s, &tm);
    char text[32];
    size_ = std::strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S", &tm);
    text_.assign(text, size_);
    text_ += tail_;
    second_ = s;
  }
  return text_;
}

LogFormatter::LogFormatter(LogObserverOptions::Format format, std::string_view process_name)
    : format_(format),
      process_name_(process_name),
      pid_(static_cast<int>(::getpid())),
      asctime_(fmt::format(" {}-{} engine-0 ", process_name, pid_)) {}

void LogFormatter::append(fmt::memory_buffer& out, EventTime time, int level, std::string_view logger,
                          std::string_view function, std::string_view message, std::span<const Extra> extras,
                          std::string_view dfk) {
  if (format_ == LogObserverOptions::Format::text) {
    // Parsl's DEFAULT_FORMAT; the engine is thread "engine", the event kind its function.
    // Appended piece by piece: this is the default log's hot loop.
    append_created(out, time);
    out.push_back(' ');
    out.append(asctime_.with_tail(time));
    out.append(logger);
    out.append(std::string_view(":0 "));
    out.append(function);
    out.push_back(' ');
    out.append(level_name(level));
    out.append(std::string_view(": "));
    out.append(message);
    for (const Extra& e : extras) {
      if (e.key == "parsl.dfk") continue;
      out.push_back(' ');
      out.append(e.key);
      out.push_back('=');
      out.append(e.value);
    }
    out.push_back('\n');
    return;
  }
  // Parsl's JSONLogging keys; extras as strings, as Parsl writes them.
  auto json = [&](std::string_view s) { append_json_string(out, s); };
  out.append(std::string_view("{\"created\": "));
  append_created(out, time);
  fmt::format_to(fmt::appender(out), FMT_COMPILE(", \"process\": {}, \"processName\": "), pid_);
  json(process_name_);
  out.append(std::string_view(", \"threadName\": \"engine\", \"thread\": 0, \"name\": "));
  json(logger);
  out.append(std::string_view(", \"lineno\": 0, \"funcname\": "));
  json(function);
  fmt::format_to(fmt::appender(out), ", \"levelname\": \"{}\", \"msg\": ", level_name(level));
  json(message);
  out.append(std::string_view(", \"formatted\": "));
  json(message);
  if (!dfk.empty()) {
    out.append(std::string_view(", \"parsl.dfk\": "));
    json(dfk);
  }
  for (const Extra& e : extras) {
    out.append(std::string_view(", "));
    json(e.key);
    out.append(std::string_view(": "));
    json(e.value);
  }
  out.append(std::string_view("}\n"));
}

LogObserver::LogObserver(LogObserverOptions options)
    : options_(std::move(options)),
      threshold_(std::min(options_.sink ? options_.forward_level : log_level::kOff,
                          options_.path.empty() ? log_level::kOff : options_.level)) {
  if (!options_.path.empty()) {
    fd_ = ::open(options_.path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd_ < 0) throw std::system_error(errno, std::generic_category(), "cannot open log file " + options_.path);
  }
  writer_ = std::thread([this] { run(); });
}

LogObserver::~LogObserver() { stop(); }

void LogObserver::stop() {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    stopping_ = true;
  }
  wake_.notify_one();
  writer_.join();
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  // The sink may own things that must be released on the stopping thread (a Python callable,
  // released where the caller can take the GIL), not wherever the last owner lets go.
  options_.sink = nullptr;
}

LogObserver::Text LogObserver::put(std::string_view s) {
  Text t{static_cast<std::uint32_t>(pending_.arena.size()), static_cast<std::uint32_t>(s.size())};
  pending_.arena.append(s);
  return t;
}

LogObserver::Pending* LogObserver::add(Kind kind, int level, EventTime time) {
  if (stopping_) return nullptr;
  ++recorded_;
  if (pending_.records.size() >= kMaxPending) {
    ++dropped_;
    return nullptr;
  }
  Pending& p = pending_.records.emplace_back();
  p.kind = kind;
  p.level = static_cast<std::int16_t>(level);
  p.time = time;
  return &p;
}

void LogObserver::committed() {
  // The first record wakes an idle writer (which then lets a batch gather); a full batch wakes
  // it early. Other records cost no system call.
  const std::size_t n = pending_.records.size();
  if (n == 1 || n == kWakeAt) wake_.notify_one();
}

void LogObserver::on_workflow(const WorkflowEvent& e) {
  if (e.kind == WorkflowEvent::Kind::checkpointed) {
    // Parsl's lines of a checkpoint pass: INFO when it wrote results, DEBUG when none.
    const int level = e.checkpointed > 0 ? log_level::kInfo : log_level::kDebug;
    if (!wanted(level)) return;
    std::lock_guard lock(mutex_);
    Pending* p = add(Kind::checkpointed, level, e.time);
    if (p == nullptr) return;
    p->count_a = static_cast<int>(e.checkpointed);
    committed();
    return;
  }
  if (!wanted(log_level::kInfo)) return;
  std::lock_guard lock(mutex_);
  const bool started = e.kind == WorkflowEvent::Kind::started;
  Pending* p = add(started ? Kind::workflow_started : Kind::workflow_ended, log_level::kInfo, e.time);
  if (p == nullptr) return;
  p->count_a = e.tasks_completed;
  p->count_b = e.tasks_failed;
  p->text[0] = put(e.run_id);
  p->text[1] = put(e.run_dir);
  committed();
}

void LogObserver::on_task(const TaskEvent& e) {
  if (e.kind == TaskEvent::Kind::described) return;  // the monitoring database's, not a log line
  const int level = e.kind == TaskEvent::Kind::state ? state_level(e.state) : log_level::kDebug;
  if (!wanted(level)) return;  // the common case when only failures are wanted: no lock
  std::lock_guard lock(mutex_);
  const Kind kind = e.kind == TaskEvent::Kind::submitted ? Kind::task_submitted
                    : e.kind == TaskEvent::Kind::state   ? Kind::task_state
                                                         : Kind::task_dependency;
  Pending* p = add(kind, level, e.time);
  if (p == nullptr) return;
  p->state = e.state;
  p->task = e.task.value;
  p->dependency = e.dependency.value;
  p->try_id = e.try_id;
  p->count_a = e.fail_count;
  p->text[0] = put(e.func_name);
  p->text[1] = put(e.executor);
  p->text[2] = put(e.error);
  committed();
}

void LogObserver::on_try(const TryEvent& e) {
  if (!wanted(log_level::kDebug)) return;
  std::lock_guard lock(mutex_);
  Pending* p = add(Kind::attempt, log_level::kDebug, e.time);
  if (p == nullptr) return;
  p->task = e.task.value;
  p->try_id = e.try_id;
  p->text[0] = put(e.executor);
  p->text[1] = put(e.block);
  p->text[2] = put(e.pool);
  p->text[3] = put(e.hostname);
  committed();
}

void LogObserver::on_block(const BlockEvent& e) {
  const int level = e.status == "FAILED" ? log_level::kError : log_level::kInfo;
  if (!wanted(level)) return;
  std::lock_guard lock(mutex_);
  Pending* p = add(Kind::block, level, e.time);
  if (p == nullptr) return;
  p->text[0] = put(e.executor);
  p->text[1] = put(e.block);
  p->text[2] = put(e.job_id);
  p->text[3] = put(e.status);
  p->text[4] = put(e.message);
  committed();
}

void LogObserver::on_pool(const PoolEvent& e) {
  if (e.kind == PoolEvent::Kind::busy || e.kind == PoolEvent::Kind::idle) return;  // the database's, not the log's
  const Kind kind = e.kind == PoolEvent::Kind::joined      ? Kind::pool_joined
                    : e.kind == PoolEvent::Kind::heartbeat ? Kind::pool_heartbeat
                                                           : Kind::pool_left;
  const int level = kind == Kind::pool_heartbeat ? log_level::kDebug
                    : kind == Kind::pool_left && !e.reason.empty() ? log_level::kWarning
                                                                   : log_level::kInfo;
  if (!wanted(level)) return;
  std::lock_guard lock(mutex_);
  Pending* p = add(kind, level, e.time);
  if (p == nullptr) return;
  p->count_a = e.worker_count;
  p->count_b = e.cpu_count;
  p->number = e.total_memory;
  p->text[0] = put(e.executor);
  p->text[1] = put(e.pool);
  p->text[2] = put(e.block);
  p->text[3] = put(e.hostname);
  p->text[4] = put(e.python_version);
  p->text[5] = put(e.reason);
  committed();
}

void LogObserver::write_line(std::string_view line) {
  std::lock_guard lock(mutex_);
  Pending* p = add(Kind::line, log_level::kOff, std::chrono::system_clock::now());
  if (p == nullptr) return;
  p->text[0] = put(line);
  committed();
}

void LogObserver::record(int level, std::string_view logger, std::string_view function, std::string_view message) {
  if (!wanted(level)) return;
  std::lock_guard lock(mutex_);
  Pending* p = add(Kind::message, level, std::chrono::system_clock::now());
  if (p == nullptr) return;
  p->text[0] = put(logger);
  p->text[1] = put(function);
  p->text[2] = put(message);
  committed();
}

void LogObserver::flush() {
  std::unique_lock lock(mutex_);
  const std::uint64_t target = recorded_;
  if (done_ >= target) return;
  flush_asked_ = true;
  wake_.notify_one();
  written_.wait(lock, [&] { return done_ >= target; });
}

void LogObserver::run() {
  detail::name_this_thread("pv-log");
  Batch batch;
  for (;;) {
    std::uint64_t taken;
    bool last;
    {
      std::unique_lock lock(mutex_);
      // Idle until something is recorded (no timer ticking in an idle run), then up to one
      // flush interval for the batch to gather.
      wake_.wait(lock, [&] { return stopping_ || flush_asked_ || !pending_.records.empty() || dropped_ > 0; });
      wake_.wait_for(lock, options_.flush_interval, [&] {
        return stopping_ || flush_asked_ || pending_.records.size() >= kWakeAt;
      });
      flush_asked_ = false;
      std::swap(batch, pending_);
      taken = recorded_;
      last = stopping_;
      if (dropped_ > 0) {  // said in the file where it happened
        Pending& p = batch.records.emplace_back();
        p.kind = Kind::line;
        p.level = log_level::kOff;
        p.text[0] = {static_cast<std::uint32_t>(batch.arena.size()), 0};
        batch.arena += fmt::format("pervade: {} log records dropped (the log writer could not keep up)", dropped_);
        p.text[0].size = static_cast<std::uint32_t>(batch.arena.size() - p.text[0].offset);
        dropped_ = 0;
      }
    }
    if (!batch.records.empty()) write_batch(batch);
    batch.clear();
    {
      std::lock_guard lock(mutex_);
      done_ = taken;
    }
    written_.notify_all();
    if (last) return;
  }
}

std::string_view LogObserver::Described::number(int slot, std::uint64_t value) {
  const fmt::format_int text(value);
  std::memcpy(numbers[slot], text.data(), text.size());
  return {numbers[slot], text.size()};
}

void LogObserver::describe(const Pending& p, std::string_view arena, fmt::memory_buffer& message,
                           Described& d) const {
  auto text = [&](int i) { return arena.substr(p.text[i].offset, p.text[i].size); };
  const auto to_message = fmt::appender(message);
  d.logger = kDataflowLogger;
  auto task_extras = [&](bool with_try) {
    d.add("parsl.task", d.number(0, p.task));
    if (with_try) d.add("parsl.try_id", d.number(1, parsl_try_id(p.try_id)));
  };
  switch (p.kind) {
    case Kind::workflow_started:
      d.function = "__init__";
      fmt::format_to(to_message, FMT_COMPILE("Starting DataFlowKernel: run id {}, run_dir {}"), text(0), text(1));
      d.add("parsl.dfk", text(0));
      break;
    case Kind::workflow_ended:
      d.function = "cleanup";
      fmt::format_to(to_message, FMT_COMPILE("DFK cleanup complete: {} tasks completed, {} failed"), p.count_a, p.count_b);
      d.add("parsl.dfk", text(0));
      break;
    case Kind::checkpointed:
      d.logger = kMemoizationLogger;
      d.function = "checkpoint";
      if (p.count_a > 0)
        fmt::format_to(to_message, FMT_COMPILE("Done checkpointing {} tasks"), p.count_a);
      else
        fmt::format_to(to_message, FMT_COMPILE("No tasks checkpointed in this pass."));
      break;
    case Kind::task_submitted:
      d.function = "submit";
      fmt::format_to(to_message, FMT_COMPILE("Task {} submitted for App {}, initializing state to {}"), p.task, text(0), to_string(p.state));
      task_extras(false);
      d.add("parsl.app_name", text(0));
      d.add("parsl.task_state", to_string(p.state));
      break;
    case Kind::task_dependency:
      d.function = "submit";
      fmt::format_to(to_message, FMT_COMPILE("Task {} waiting on task {}"), p.task, p.dependency);
      task_extras(false);
      d.add("parsl.app_name", text(0));
      d.add("parsl.dependency_task", d.number(2, p.dependency));
      break;
    case Kind::task_state:
      d.function = "update_task_state";
      if (p.state == TaskState::launched)
        fmt::format_to(to_message, FMT_COMPILE("Task {} try {} launched on executor {}"), p.task, parsl_try_id(p.try_id), text(1));
      else if (text(2).empty())
        fmt::format_to(to_message, FMT_COMPILE("Task {} changing state to {}"), p.task, to_string(p.state));
      else
        fmt::format_to(to_message, FMT_COMPILE("Task {} changing state to {} (fail_count {}): {}"), p.task, to_string(p.state), p.count_a, text(2));
      task_extras(p.try_id != 0);
      d.add("parsl.app_name", text(0));
      if (!text(1).empty()) d.add("parsl.executor", text(1));
      d.add("parsl.task_state", to_string(p.state));
      break;
    case Kind::attempt:
      d.function = "launch_task";
      fmt::format_to(to_message, FMT_COMPILE("Task {} try {} on executor {}: block {}, pool {}, host {}"), p.task, parsl_try_id(p.try_id), text(0), text(1),
          text(2), text(3));
      task_extras(true);
      d.add("parsl.executor", text(0));
      break;
    case Kind::block:
      d.logger = kExecutorsLogger;
      d.function = "block_status";
      fmt::format_to(to_message, FMT_COMPILE("Block {} of executor {} (job {}) is {}"), text(1), text(0),
          text(2).empty() ? std::string_view("not submitted") : text(2), text(3));
      if (!text(4).empty()) fmt::format_to(to_message, FMT_COMPILE(": {}"), text(4));
      d.add("parsl.executor", text(0));
      break;
    case Kind::pool_joined:
      d.logger = kExecutorsLogger;
      d.function = "pool_joined";
      fmt::format_to(to_message, FMT_COMPILE("Pool {} of block {} on {} joined executor {}: {} workers, {} CPUs, {} bytes of memory, Python {}"), text(1),
          text(2), text(3), text(0), p.count_a, p.count_b, p.number, text(4));
      d.add("parsl.executor", text(0));
      break;
    case Kind::pool_heartbeat:
      d.logger = kExecutorsLogger;
      d.function = "pool_heartbeat";
      fmt::format_to(to_message, FMT_COMPILE("Heartbeat from pool {} of block {} on {}"), text(1), text(2), text(3));
      d.add("parsl.executor", text(0));
      break;
    case Kind::pool_left:
      d.logger = kExecutorsLogger;
      d.function = "pool_left";
      fmt::format_to(to_message, FMT_COMPILE("Pool {} of block {} on {} left executor {}"), text(1), text(2), text(3), text(0));
      if (!text(5).empty()) fmt::format_to(to_message, FMT_COMPILE(": {}"), text(5));
      d.add("parsl.executor", text(0));
      break;
    case Kind::message:
      d.logger = text(0);
      d.function = text(1);
      message.append(text(2));
      break;
    case Kind::line:
      message.append(text(0));
      break;
  }
}

void LogObserver::write_batch(Batch& batch) {
  // Written in chunks: a buffer that stays small stays in cache and needs no fresh pages.
  constexpr std::size_t kChunk = 64 << 10;
  fmt::memory_buffer out;
  fmt::memory_buffer message;
  std::vector<LogEntry> forward;
  LogFormatter format(options_.format, options_.process_name);
  const std::string_view arena = batch.arena;
  for (const Pending& p : batch.records) {
    if (out.size() >= kChunk) {
      write_out({out.data(), out.size()});
      out.clear();
    }
    if (p.kind == Kind::line) {  // formatted by its writer: as it is
      out.append(arena.substr(p.text[0].offset, p.text[0].size));
      out.push_back('\n');
      continue;
    }
    message.clear();
    Described d;
    describe(p, arena, message, d);
    const std::string_view msg(message.data(), message.size());
    const bool workflow = p.kind == Kind::workflow_started || p.kind == Kind::workflow_ended;
    if (p.kind == Kind::workflow_started) run_id_ = std::string(d.extras[0].value);
    if (fd_ >= 0 && p.level >= options_.level)
      format.append(out, p.time, p.level, d.logger, d.function, msg, {d.extras, static_cast<std::size_t>(d.count)},
                    workflow ? std::string_view() : std::string_view(run_id_));
    if (options_.sink && p.level >= options_.forward_level) {
      LogEntry& e = forward.emplace_back(LogEntry{p.time, p.level, d.logger, d.function, std::string(msg), {}});
      for (int i = 0; i < d.count; ++i) e.extras.emplace_back(d.extras[i].key, std::string(d.extras[i].value));
    }
  }
  write_out({out.data(), out.size()});
  if (!forward.empty()) options_.sink(forward);
}

void LogObserver::write_out(std::string_view bytes) {
  while (!bytes.empty() && fd_ >= 0 && !write_failed_) {
    const ssize_t n = ::write(fd_, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      // Logging must never stop the workflow: to_message it once, loudly, and carry on without the file.
      std::fprintf(stderr, "pervade: cannot write the log file %s (%s); the rest of this run's log is lost\n",
                   options_.path.c_str(), std::strerror(errno));
      write_failed_ = true;
      return;
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
}

}  // namespace pervade
