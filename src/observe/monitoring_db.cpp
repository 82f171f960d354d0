// The monitoring database writer (pervade/monitoring.hpp). Emitting threads only copy events
// into a buffer under a short lock; the writer thread swaps the buffer out, turns it into rows
// and commits them in one transaction. Rows of tasks and tries that begin in a batch are built
// in memory and inserted once, complete: a short task costs one task row, one try row and its
// status rows, with no UPDATE. Later changes to rows of earlier batches are gathered into one
// UPDATE per row and batch.
#include "pervade/monitoring.hpp"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <sqlite3.h>
#include <unistd.h>

#include <array>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <variant>
#include <vector>

#include <fmt/format.h>

#include "observe/log_observer.hpp"
#include "pervade/errors.hpp"
#include "util/fd.hpp"
#include "util/hex.hpp"
#include "util/thread_name.hpp"

namespace pervade {
namespace {

// The tables exactly as Parsl's SQLAlchemy models create them in SQLite
// (parsl/monitoring/db_manager.py), so that a database either made is read by the other's tools.
constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS workflow (
	run_id TEXT NOT NULL,
	workflow_name TEXT,
	workflow_version TEXT,
	time_began DATETIME NOT NULL,
	time_completed DATETIME,
	host TEXT NOT NULL,
	user TEXT NOT NULL,
	rundir TEXT NOT NULL,
	tasks_failed_count INTEGER NOT NULL,
	tasks_completed_count INTEGER NOT NULL,
	PRIMARY KEY (run_id)
);
CREATE TABLE IF NOT EXISTS status (
	task_id INTEGER NOT NULL,
	task_status_name TEXT NOT NULL,
	timestamp DATETIME NOT NULL,
	run_id TEXT NOT NULL,
	try_id INTEGER NOT NULL,
	PRIMARY KEY (task_id, run_id, task_status_name, timestamp),
	FOREIGN KEY(run_id) REFERENCES workflow (run_id)
);
CREATE TABLE IF NOT EXISTS task (
	task_id INTEGER NOT NULL,
	run_id TEXT NOT NULL,
	task_depends TEXT,
	task_func_name TEXT NOT NULL,
	task_memoize TEXT NOT NULL,
	task_hashsum TEXT,
	task_inputs TEXT,
	task_outputs TEXT,
	task_stdin TEXT,
	task_stdout TEXT,
	task_stderr TEXT,
	task_time_invoked DATETIME,
	task_time_returned DATETIME,
	task_fail_count INTEGER NOT NULL,
	task_fail_cost FLOAT NOT NULL,
	PRIMARY KEY (task_id, run_id)
);
CREATE TABLE IF NOT EXISTS try (
	try_id INTEGER NOT NULL,
	task_id INTEGER NOT NULL,
	run_id TEXT NOT NULL,
	block_id TEXT,
	hostname TEXT,
	task_executor TEXT NOT NULL,
	task_try_time_launched DATETIME,
	task_try_time_running DATETIME,
	task_try_time_returned DATETIME,
	task_fail_history TEXT,
	task_joins TEXT,
	PRIMARY KEY (try_id, task_id, run_id)
);
CREATE TABLE IF NOT EXISTS node (
	id INTEGER NOT NULL,
	run_id TEXT NOT NULL,
	hostname TEXT NOT NULL,
	uid TEXT NOT NULL,
	block_id TEXT NOT NULL,
	cpu_count INTEGER NOT NULL,
	total_memory BIGINT NOT NULL,
	active BOOLEAN NOT NULL,
	worker_count INTEGER NOT NULL,
	python_v TEXT NOT NULL,
	timestamp DATETIME NOT NULL,
	last_heartbeat DATETIME NOT NULL,
	PRIMARY KEY (id)
);
CREATE TABLE IF NOT EXISTS block (
	run_id TEXT NOT NULL,
	executor_label TEXT NOT NULL,
	block_id TEXT NOT NULL,
	job_id TEXT,
	timestamp DATETIME NOT NULL,
	status TEXT NOT NULL,
	PRIMARY KEY (run_id, block_id, executor_label, timestamp)
);
CREATE TABLE IF NOT EXISTS resource (
	try_id INTEGER NOT NULL,
	task_id INTEGER NOT NULL,
	run_id TEXT NOT NULL,
	timestamp DATETIME NOT NULL,
	resource_monitoring_interval FLOAT,
	psutil_process_pid INTEGER,
	psutil_process_memory_percent FLOAT,
	psutil_process_children_count FLOAT,
	psutil_process_time_user FLOAT,
	psutil_process_time_system FLOAT,
	psutil_process_memory_virtual FLOAT,
	psutil_process_memory_resident FLOAT,
	psutil_process_disk_read FLOAT,
	psutil_process_disk_write FLOAT,
	psutil_process_status TEXT,
	psutil_cpu_num TEXT,
	psutil_process_num_ctx_switches_voluntary FLOAT,
	psutil_process_num_ctx_switches_involuntary FLOAT,
	PRIMARY KEY (try_id, task_id, run_id, timestamp),
	FOREIGN KEY(run_id) REFERENCES workflow (run_id)
);
)sql";

// Parsl's one secondary index. On a database this writer creates it is made when the writer
// closes (one sort, instead of an index entry per task while the run goes: nobody looks tasks up
// by hashsum during a run); on an existing database, at once.
constexpr const char* kHashsumIndex = "CREATE INDEX IF NOT EXISTS ix_task_task_hashsum ON task (task_hashsum);";

// Owned copies of the events (an event's strings live only during the call).
struct WorkflowRec {
  WorkflowEvent::Kind kind;
  EventTime time;
  std::string run_id, run_dir;
  int completed, failed;
};
struct TaskRec {
  TaskEvent::Kind kind;
  EventTime time;
  std::uint64_t task;
  std::uint32_t try_id;
  TaskState state;
  std::string text;  // submitted: the app's name; launched: the executor; failures: the error
  std::uint64_t dependency;
  int fail_count;
  double fail_cost;
  bool memoized;
  std::string stdout_path, stderr_path;  // submitted
};
struct TryRec {
  EventTime time;
  std::uint64_t task;
  std::uint32_t try_id;
  std::string block, hostname;
};
struct BlockRec {
  EventTime time;
  std::string executor, block, job_id, status;
};
struct PoolRec {
  PoolEvent::Kind kind;
  EventTime time;
  std::string pool, block, hostname, python_version;
  int worker_count, cpu_count;
  std::uint64_t total_memory;
};
// What the front end says of a call (TaskEvent::Kind::described) and the memo key once the
// kernel knows it: each field "" when this record leaves it as it is.
struct DescribedRec {
  std::uint64_t task;
  std::string inputs, outputs, memo_key;
};
using Record = std::variant<WorkflowRec, TaskRec, DescribedRec, TryRec, BlockRec, PoolRec, ResourceSample>;

// SQLAlchemy's SQLite DATETIME text, in local time as Parsl's datetime.now(): "2026-12-01 23:05:01.123456".
// Held inline in the rows: a heap string per timestamp was a tenth of the writer's CPU.
struct Stamp {
  static constexpr std::size_t kSize = 26;
  std::array<char, kSize> text;
  std::string_view view() const { return {text.data(), kSize}; }
};

class TimeText {
 public:
  Stamp operator()(EventTime t) {
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
    std::int64_t secs = us / 1000000, frac = us % 1000000;
    if (frac < 0) frac += 1000000, --secs;
    if (secs != cached_secs_) {  // localtime_r takes a lock and reads the zone: once a second
      const std::time_t tt = static_cast<std::time_t>(secs);
      std::tm tm{};
      localtime_r(&tt, &tm);
      prefix_ = fmt::format("{:04}-{:02}-{:02} {:02}:{:02}:{:02}", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                            tm.tm_hour, tm.tm_min, tm.tm_sec);
      cached_secs_ = secs;
    }
    // prefix_ + "." + six digits, without a formatting call: this runs for every event.
    Stamp out;
    std::memcpy(out.text.data(), prefix_.data(), 19);
    out.text[19] = '.';
    for (std::size_t i = Stamp::kSize - 1; i >= 20; --i, frac /= 10) out.text[i] = static_cast<char>('0' + frac % 10);
    return out;
  }

 private:
  std::int64_t cached_secs_ = -1;
  std::string prefix_;  // "YYYY-MM-DD HH:MM:SS"
};

// A failed SQLite call, with its result code: a locked database is waited out, not given up.
struct SqliteError : Error {
  SqliteError(int rc, const std::string& what) : Error(what), code(rc) {}
  bool locked() const { return (code & 0xff) == SQLITE_BUSY || (code & 0xff) == SQLITE_LOCKED; }
  int code;
};

[[noreturn]] void throw_sqlite(sqlite3* db, int rc) { throw SqliteError(rc, sqlite3_errmsg(db)); }

class Statement {
 public:
  Statement(sqlite3* db, const char* sql) {
    if (const int rc = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr); rc != SQLITE_OK)
      throw SqliteError(rc, fmt::format("monitoring database: {}: {}", sqlite3_errmsg(db), sql));
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  Statement& bind(int i, std::int64_t v) { return check(sqlite3_bind_int64(stmt_, i, v)); }
  Statement& bind(int i, double v) { return check(sqlite3_bind_double(stmt_, i, v)); }
  Statement& bind(int i, const std::string& v) {
    return check(sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT));
  }
  Statement& bind(int i, const std::optional<std::string>& v) {
    return v ? bind(i, *v) : check(sqlite3_bind_null(stmt_, i));
  }
  // Text that outlives the statement's next step (the run id, state names, the rows of a batch):
  // not copied. SQLite copies other text (SQLITE_TRANSIENT) with a malloc per value.
  Statement& bind_static(int i, std::string_view v) {
    // A default string_view's null data() would bind NULL, not "".
    return check(sqlite3_bind_text(stmt_, i, v.data() ? v.data() : "", static_cast<int>(v.size()), SQLITE_STATIC));
  }
  Statement& bind_static(int i, const Stamp& v) { return bind_static(i, v.view()); }
  Statement& bind_null(int i) { return check(sqlite3_bind_null(stmt_, i)); }
  template <class T>
  Statement& bind_static(int i, const std::optional<T>& v) {
    return v ? bind_static(i, *v) : bind_null(i);
  }
  // "" is NULL.
  Statement& bind_static_or_null(int i, std::string_view v) { return v.empty() ? bind_null(i) : bind_static(i, v); }
  void run() {
    const int rc = sqlite3_step(stmt_);
    sqlite3_reset(stmt_);  // every parameter is bound again before the next step
    if (rc != SQLITE_DONE) throw_sqlite(sqlite3_db_handle(stmt_), rc);
  }
  // Rows the last run() changed (an UPDATE of a row not written yet changes none).
  int changes() const { return sqlite3_changes(sqlite3_db_handle(stmt_)); }

 private:
  Statement& check(int rc) {
    if (rc != SQLITE_OK) throw_sqlite(sqlite3_db_handle(stmt_), rc);
    return *this;
  }
  sqlite3_stmt* stmt_ = nullptr;
};

// An INSERT of many rows at a time: `head` is "INSERT ... VALUES ", `tuple` one row's values
// with `params` placeholders. Rows go kRows per statement step, the rest one by one: the
// per-row cost of a step is most of what a small row costs.
class BulkInsert {
 public:
  static constexpr std::size_t kRows = 64;
  BulkInsert(sqlite3* db, const std::string& head, const std::string& tuple, int params)
      : one_(db, (head + tuple).c_str()), many_(db, repeated(head, tuple).c_str()), params_(params) {}
  // bind(statement, first parameter index - 1, row) for each row of [begin, end).
  template <class It, class Bind>
  void insert(It begin, It end, Bind&& bind) {
    std::vector<It> group;
    group.reserve(kRows);
    for (It it = begin; it != end; ++it) {
      group.push_back(it);
      if (group.size() == kRows) {
        for (std::size_t k = 0; k < kRows; ++k) bind(many_, static_cast<int>(k) * params_, *group[k]);
        many_.run();
        group.clear();
      }
    }
    for (It it : group) {
      bind(one_, 0, *it);
      one_.run();
    }
  }

 private:
  static std::string repeated(const std::string& head, const std::string& tuple) {
    std::string sql = head;
    for (std::size_t i = 0; i < kRows; ++i) sql += (i ? "," : "") + tuple;
    return sql;
  }
  Statement one_, many_;
  int params_;
};

// The rows begun in one batch, in the order they began (task ids ascending, as the tables' indexes
// like them), found by key. Cleared at the end of each batch; its storage is kept.
template <class Key, class Row, class Hash = std::hash<Key>>
class BatchRows {
 public:
  Row* find(const Key& key) {
    const auto it = at_.find(key);
    return it == at_.end() ? nullptr : &rows_[it->second].second;
  }
  Row& operator[](const Key& key) {
    const auto [it, fresh] = at_.try_emplace(key, rows_.size());
    if (fresh) rows_.emplace_back(key, Row{});
    return rows_[it->second].second;
  }
  auto begin() const { return rows_.begin(); }
  auto end() const { return rows_.end(); }
  void clear() {
    rows_.clear();
    at_.clear();
  }

 private:
  std::vector<std::pair<Key, Row>> rows_;
  std::unordered_map<Key, std::size_t, Hash> at_;
};

std::string this_user() {
  if (const passwd* pw = getpwuid(getuid())) return pw->pw_name;
  const char* u = std::getenv("USER");
  return u ? u : "";
}

std::string this_host() {
  char name[256] = {};
  gethostname(name, sizeof name - 1);
  return name;
}

class MonitoringDb final : public Observer {
 public:
  MonitoringDb(const std::string& path, MonitoringOptions options)
      : options_(std::move(options)),
        path_(path),
        log_format_(options_.log_json ? LogObserverOptions::Format::json_lines : LogObserverOptions::Format::text,
                    "MainProcess"),
        hold_for_(std::chrono::duration_cast<std::chrono::system_clock::duration>(3 * options_.commit_interval)) {
    if (!options_.log_path.empty()) {
      log_fd_ = detail::Fd(::open(options_.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
      if (!log_fd_.valid())
        throw ConfigurationError(fmt::format("monitoring database log '{}' cannot be opened: {}", options_.log_path,
                                             std::strerror(errno)));
    }
    open();
    log(log_level::kInfo, "start",
        fmt::format("Database manager started: writing {} at least every {} s", path_, options_.commit_interval.count()));
    writer_ = std::thread([this] {
      detail::name_this_thread("pv-monitor-db");
      write_loop();
    });
  }

  ~MonitoringDb() override {
    close();
    if (db_) sqlite3_close(db_);
  }

  void on_workflow(const WorkflowEvent& e) override {
    if (e.kind == WorkflowEvent::Kind::checkpointed) return;  // no row of Parsl's schema for it
    push(WorkflowRec{e.kind, e.time, std::string(e.run_id), std::string(e.run_dir), e.tasks_completed, e.tasks_failed});
  }

  void on_task(const TaskEvent& e) override {
    if (e.kind == TaskEvent::Kind::described) {
      push(DescribedRec{e.task.value, std::string(e.inputs), std::string(e.outputs), {}});
      return;
    }
    // Only what the writer needs: the name once (at submission), the executor at a launch, the error at a failure.
    std::string_view text;
    if (e.kind == TaskEvent::Kind::submitted)
      text = e.func_name;
    else if (e.kind == TaskEvent::Kind::state)
      text = e.state == TaskState::launched ? e.executor : e.error;
    push(TaskRec{e.kind, e.time, e.task.value, e.try_id, e.state, std::string(text), e.dependency.value, e.fail_count,
                 e.fail_cost, e.memoized, std::string(e.stdout_path), std::string(e.stderr_path)});
    // Parsl's task_hashsum: the key is known when the task leaves pending (first launch or memo hit).
    if (!e.memo_key.empty() && e.kind == TaskEvent::Kind::state &&
        (e.state == TaskState::memo_done || (e.state == TaskState::launched && e.try_id == 1)))
      push(DescribedRec{e.task.value, {}, {}, std::string(e.memo_key)});
  }

  void on_try(const TryEvent& e) override {
    push(TryRec{e.time, e.task.value, e.try_id, std::string(e.block), std::string(e.hostname)});
  }

  void on_block(const BlockEvent& e) override {
    push(BlockRec{e.time, std::string(e.executor), std::string(e.block), std::string(e.job_id), std::string(e.status)});
  }

  void on_pool(const PoolEvent& e) override {
    push(PoolRec{e.kind, e.time, std::string(e.pool), std::string(e.block), std::string(e.hostname),
                 std::string(e.python_version), e.worker_count, e.cpu_count, e.total_memory});
  }

  void on_resource(const ResourceSample& e) override {
    ResourceSample copy = e;
    copy.executor = {};
    copy.hostname = {};
    push(copy);
  }

  std::optional<double> resource_interval() const override {
    // An interval of 0 turns sampling off, as in Parsl (its monitor wrapper samples only when
    // the interval is positive).
    if (!options_.resource_monitoring_enabled || options_.resource_monitoring_interval <= 0) return std::nullopt;
    return options_.resource_monitoring_interval;
  }

  void close() override {
    {
      std::lock_guard lock(mutex_);
      if (stop_) return;
      stop_ = true;
    }
    cv_.notify_one();
    if (writer_.joinable()) writer_.join();
  }

 private:
  // Events wait in fixed-size chunks: emitting threads fill the newest, the writer takes them all
  // and gives the emptied ones back. A steady run allocates nothing per event (a deque allocated
  // a node every two events, freed on the other thread), and a writer lagging behind a fast run
  // never makes an emitting thread move what is already buffered (as a vector's growth would).
  struct Chunk {
    static constexpr std::size_t kSize = 2048;
    std::array<Record, kSize> records;
    std::size_t size = 0;
  };
  using Chunks = std::vector<std::unique_ptr<Chunk>>;
  static constexpr std::size_t kSpareChunks = 16;  // kept for reuse (a few MB); more are freed

  void push(Record&& r) {
    std::lock_guard lock(mutex_);
    if (buffer_.empty() || buffer_.back()->size == Chunk::kSize) {
      if (spare_.empty()) {
        buffer_.push_back(std::make_unique<Chunk>());
      } else {
        buffer_.push_back(std::move(spare_.back()));
        spare_.pop_back();
      }
    }
    Chunk& chunk = *buffer_.back();
    chunk.records[chunk.size++] = std::move(r);  // the record it replaces frees its strings here
  }

  // Writer thread: the written (or lost) chunks go back for reuse.
  void recycle(Chunks& chunks) {
    {
      std::lock_guard lock(mutex_);
      for (auto& chunk : chunks) {
        if (spare_.size() == kSpareChunks) break;
        chunk->size = 0;
        spare_.push_back(std::move(chunk));
      }
    }
    chunks.clear();  // frees the chunks not kept, outside the lock
  }

  static std::size_t events(const Chunks& chunks) {
    std::size_t n = 0;
    for (const auto& chunk : chunks) n += chunk->size;
    return n;
  }

  void open() {
    const auto fail = [&](const std::string& why) {
      if (db_) sqlite3_close(db_);
      db_ = nullptr;
      return ConfigurationError(fmt::format("monitoring database '{}' cannot be used: {}", path_, why));
    };
    // Made 0600 before SQLite opens it (its -wal and -shm files take the database's mode): task
    // names, errors and std paths are not for other local users. An existing database keeps its mode.
    if (const int fd = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600); fd >= 0) ::close(fd);
    if (sqlite3_open_v2(path_.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr) !=
        SQLITE_OK)
      throw fail(db_ ? sqlite3_errmsg(db_) : "cannot open");
    sqlite3_busy_timeout(db_, 2000);
    char* err = nullptr;
    // WAL: readers (dashboards) never block the writer. synchronous=OFF: a committed batch is
    // in the operating system once COMMIT returns, so it survives the process being killed
    // (not a power failure), with no fsync at all (as the checkpoint store, docs/checkpoints.md).
    // A 64 MiB page cache keeps the status table's index in memory while rows pour in; 16 KiB
    // pages (new files) and a checkpoint every 10000 pages (160 MiB of WAL) mean fewer, larger
    // writes: together with BulkInsert, 3/4 of the writer's CPU per task of the first version.
    const auto has_task_table = [&] {
      sqlite3_stmt* s = nullptr;
      bool found = false;
      if (sqlite3_prepare_v2(db_, "SELECT 1 FROM sqlite_master WHERE type='table' AND name='task'", -1, &s, nullptr) ==
          SQLITE_OK)
        found = sqlite3_step(s) == SQLITE_ROW;
      sqlite3_finalize(s);
      return found;
    };
    const auto exec = [&](const char* sql) { return sqlite3_exec(db_, sql, nullptr, nullptr, &err) == SQLITE_OK; };
    bool ok = exec("PRAGMA page_size=16384; PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF; PRAGMA cache_size=-65536; PRAGMA mmap_size=1073741824; PRAGMA wal_autocheckpoint=10000;");
    if (ok) {
      index_at_close_ = !has_task_table();
      ok = exec(kSchema) && (index_at_close_ || exec(kHashsumIndex));
    }
    if (!ok) {
      std::string why = err ? err : sqlite3_errmsg(db_);
      sqlite3_free(err);
      throw fail(why);
    }
    stmts_ = std::make_unique<Statements>(db_);
  }

  // The writer's own log (options_.log_path), and troubles to options_.report too. Writer
  // thread (or the constructor, before it starts).
  void log(int level, std::string_view function, std::string_view message) {
    if (log_fd_.valid() && level >= options_.log_level) {
      fmt::memory_buffer out;
      log_format_.append(out, std::chrono::system_clock::now(), level, "pervade.monitoring.db_manager", function,
                         message, {}, run_id_);
      for (std::string_view rest(out.data(), out.size()); !rest.empty();) {
        const ssize_t n = ::write(log_fd_.get(), rest.data(), rest.size());
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {  // the log is lost, not the database
          log_fd_.reset();
          break;
        }
        rest.remove_prefix(static_cast<std::size_t>(n));
      }
    }
    if (level >= log_level::kWarning && options_.report) options_.report(level, message);
  }

  // Said once per kind of trouble on stderr too, as the log may be where nobody looks.
  void trouble(int level, bool& said, const std::string& message) {
    log(level, "write", message);
    if (!said) std::fprintf(stderr, "pervade: %s: %s\n", level >= log_level::kError ? "ERROR" : "WARNING", message.c_str());
    said = true;
  }

  void write_loop() {
    Chunks batch;  // events not written yet: this round's, and those a locked database held back
    const auto period = std::chrono::duration_cast<std::chrono::steady_clock::duration>(options_.commit_interval);
    std::optional<std::chrono::steady_clock::time_point> give_up_at;
    for (;;) {
      bool stopping;
      {
        std::unique_lock lock(mutex_);
        cv_.wait_for(lock, period, [&] { return stop_; });
        stopping = stop_;
        std::move(buffer_.begin(), buffer_.end(), std::back_inserter(batch));
        buffer_.clear();
      }
      const auto now = std::chrono::steady_clock::now();
      if (stopping && !give_up_at)
        give_up_at = now + std::chrono::duration_cast<std::chrono::steady_clock::duration>(options_.close_timeout);
      if ((!batch.empty() || !held_tasks_.empty() || !held_tries_.empty()) &&
          write(batch, give_up_at && now >= *give_up_at, stopping))
        recycle(batch);
      if (stopping && batch.empty() && held_tasks_.empty() && held_tries_.empty()) {
        std::lock_guard lock(mutex_);
        if (buffer_.empty()) break;  // events pushed while stopping are written next round
      }
    }
    if (lost_ > 0)
      std::fprintf(stderr, "pervade: monitoring database %s: %zu events were not written (see the error above)\n",
                   path_.c_str(), lost_);
    if (index_at_close_) {
      char* err = nullptr;
      if (sqlite3_exec(db_, kHashsumIndex, nullptr, nullptr, &err) != SQLITE_OK)
        log(log_level::kError, "close", fmt::format("the index ix_task_task_hashsum was not made: {}", err ? err : "?"));
      sqlite3_free(err);
    }
    // Closed here, not when the observer is destroyed (which may be at interpreter exit, or
    // never): the last connection's close folds the WAL into the file and removes the -wal and
    // -shm files, so monitoring.db alone holds the run (to copy or archive it).
    stmts_.reset();
    if (sqlite3_close(db_) != SQLITE_OK)
      log(log_level::kWarning, "close", fmt::format("closing {}: {}", path_, sqlite3_errmsg(db_)));
    else
      db_ = nullptr;
    log(lost_ > 0 ? log_level::kError : log_level::kInfo, "close",
        fmt::format("Database manager closed: {} events written, {} lost", written_, lost_));
  }

  // ---- rows

  // Bound to the statements without copies (Statement::bind_static): they live until flushed, at
  // the end of their batch. Views are of the batch's records, which live as long.
  struct TaskRow {
    EventTime began;  // submitted
    std::string_view func_name, stdout_path, stderr_path;
    std::string depends;
    std::string inputs = "None", outputs = "None";  // Parsl's str(None) for a call without them
    Stamp invoked;
    std::optional<Stamp> returned;
    std::optional<std::string> hashsum;
    bool memoized = false;
    int fail_count = 0;
    double fail_cost = 0;
  };
  struct TryRow {
    EventTime began;                             // the task's submission (try 0) or the retry's launch
    std::string_view executor, block, hostname;  // "" is NULL for block and hostname
    std::optional<Stamp> launched, running, returned;
    std::optional<std::string> fail_history;
  };
  using TryKey = std::pair<std::uint64_t, std::int64_t>;  // task, Parsl's try id
  struct TryKeyHash {
    std::size_t operator()(const TryKey& k) const { return std::hash<std::uint64_t>{}(k.first * 64 + static_cast<std::uint64_t>(k.second)); }
  };

  struct Statements {
    explicit Statements(sqlite3* db)
        : begin(db, "BEGIN"),
          commit(db, "COMMIT"),
          workflow(db,
                   "INSERT OR REPLACE INTO workflow (run_id, workflow_name, workflow_version, time_began, time_completed, "
                   "host, user, rundir, tasks_failed_count, tasks_completed_count) VALUES (?,?,?,?,NULL,?,?,?,0,0)"),
          workflow_counts(db, "UPDATE workflow SET tasks_failed_count=?, tasks_completed_count=? WHERE run_id=?"),
          workflow_end(db,
                       "UPDATE workflow SET time_completed=?, tasks_failed_count=?, tasks_completed_count=? WHERE run_id=?"),
          status(db, "INSERT OR IGNORE INTO status (task_id, task_status_name, timestamp, run_id, try_id) VALUES ",
                 "(?,?,?,?,?)", 5),
          // OR IGNORE (not REPLACE, whose NOT NULL conflicts abort): a multi-row INSERT that may
          // abort makes SQLite journal every page it changes into a temporary file first.
          task(db,
               "INSERT OR IGNORE INTO task (task_id, run_id, task_depends, task_func_name, task_memoize, task_hashsum, "
               "task_inputs, task_outputs, task_stdin, task_stdout, task_stderr, task_time_invoked, task_time_returned, "
               "task_fail_count, task_fail_cost) VALUES ",
               "(?,?,?,?,?,?,?,?,NULL,?,?,?,?,?,?)", 14),
          task_returned(db,
                        "UPDATE task SET task_time_returned=?, task_fail_count=?, task_fail_cost=? WHERE task_id=? AND run_id=?"),
          try_changed(db,
                      "UPDATE try SET task_executor=COALESCE(?, task_executor), "
                      "task_try_time_launched=COALESCE(?, task_try_time_launched), "
                      "task_try_time_running=COALESCE(?, task_try_time_running), "
                      "task_try_time_returned=COALESCE(?, task_try_time_returned), "
                      "task_fail_history=COALESCE(?, task_fail_history), block_id=COALESCE(?, block_id), "
                      "hostname=COALESCE(?, hostname) WHERE try_id=? AND task_id=? AND run_id=?"),
          task_described(db,
                         "UPDATE task SET task_inputs=COALESCE(?, task_inputs), task_outputs=COALESCE(?, task_outputs), "
                         "task_hashsum=COALESCE(?, task_hashsum) WHERE task_id=? AND run_id=?"),
          task_depends(db,
                       "UPDATE task SET task_depends = CASE WHEN task_depends IS NULL THEN ? ELSE task_depends || ',' || ? END "
                       "WHERE task_id=? AND run_id=?"),
          attempt(db,
                  "INSERT OR IGNORE INTO try (try_id, task_id, run_id, block_id, hostname, task_executor, "
                  "task_try_time_launched, task_try_time_running, task_try_time_returned, task_fail_history, task_joins) "
                  "VALUES ",
                  "(?,?,?,?,?,?,?,?,?,?,NULL)", 10),
          block(db,
                "INSERT OR IGNORE INTO block (run_id, executor_label, block_id, job_id, timestamp, status) VALUES (?,?,?,?,?,?)"),
          node(db,
               "INSERT INTO node (run_id, hostname, uid, block_id, cpu_count, total_memory, active, worker_count, python_v, "
               "timestamp, last_heartbeat) VALUES (?,?,?,?,?,?,?,?,?,?,?)"),
          resource(db,
                   "INSERT OR IGNORE INTO resource (try_id, task_id, run_id, timestamp, resource_monitoring_interval, "
                   "psutil_process_pid, psutil_process_memory_percent, psutil_process_children_count, "
                   "psutil_process_time_user, psutil_process_time_system, psutil_process_memory_virtual, "
                   "psutil_process_memory_resident, psutil_process_disk_read, psutil_process_disk_write, "
                   "psutil_process_status, psutil_cpu_num, psutil_process_num_ctx_switches_voluntary, "
                   "psutil_process_num_ctx_switches_involuntary) VALUES ",
                   "(?,?,?,?,?,?,NULL,?,?,?,?,?,?,?,?,NULL,?,?)", 16),
          rollback(db, "ROLLBACK") {}
    Statement begin, commit, workflow, workflow_counts, workflow_end;
    BulkInsert status, task;
    Statement task_returned, try_changed, task_described, task_depends;
    BulkInsert attempt;
    Statement block, node;
    BulkInsert resource;
    Statement rollback;
  };

  // One transaction per batch. Returns false when a locked database held it back (it is tried
  // again with the next round's events) unless give_up; any other failure loses the batch.
  bool write(const Chunks& batch, bool give_up, bool final) {
    const std::size_t batch_events = events(batch);
    hold_until_ = final ? EventTime::min() : std::chrono::system_clock::now() - hold_for_;
    take_held();
    const int completed = completed_, failed = failed_;
    const bool counts_changed = counts_changed_;
    const auto described_early = described_early_;  // almost always empty
    try {
      stmts_->begin.run();
      for (const auto& chunk : batch)
        for (std::size_t i = 0; i < chunk->size; ++i) std::visit([&](const auto& rec) { apply(rec); }, chunk->records[i]);
      flush_rows();
      flush_updates();
      flush_statuses();
      flush_resources();
      if (!run_id_.empty() && counts_changed_) {
        stmts_->workflow_counts.bind(1, std::int64_t{failed_}).bind(2, std::int64_t{completed_}).bind_static(3, run_id_).run();
        counts_changed_ = false;
      }
      stmts_->commit.run();
      held_tasks_.swap(next_held_tasks_);
      held_tries_.swap(next_held_tries_);
      next_held_tasks_.clear();
      next_held_tries_.clear();
    } catch (const std::exception& e) {
      tasks_.clear();
      tries_.clear();
      next_held_tasks_.clear();  // held_tasks_ and held_tries_ are as before the batch
      next_held_tries_.clear();
      try_updates_.clear();
      task_returns_.clear();
      statuses_.clear();
      resources_.clear();
      if (sqlite3_get_autocommit(db_) == 0) {
        try {
          stmts_->rollback.run();
        } catch (const std::exception&) {
          // Nothing more to do: the batch is tried again or reported lost below.
        }
      }
      completed_ = completed;  // the batch's counts are made again when it is tried again
      failed_ = failed;
      counts_changed_ = counts_changed;
      described_early_ = described_early;
      const auto* sqlite = dynamic_cast<const SqliteError*>(&e);
      if (sqlite != nullptr && sqlite->locked() && !give_up) {
        if (!held_)
          trouble(log_level::kWarning, said_locked_,
                  fmt::format("the monitoring database {} is locked by another connection ({}): {} events are held in "
                              "memory and written when it is free. The workflow goes on.",
                              path_, e.what(), batch_events));
        held_ = true;
        return false;
      }
      lost_ += batch_events;
      if (final) {  // nothing more will be tried: the held rows are lost with the batch
        held_tasks_.clear();
        held_tries_.clear();
      }
      trouble(log_level::kError, said_lost_,
              fmt::format("writing the monitoring database {} failed: {}. The workflow goes on; {} monitoring events "
                          "were lost.",
                          path_, e.what(), batch_events));
      return true;
    }
    if (held_) {
      held_ = false;
      log(log_level::kInfo, "write", fmt::format("the monitoring database {} is free again: {} events written", path_,
                                                 batch_events));
    }
    written_ += batch_events;
    if (options_.log_level <= log_level::kDebug)
      log(log_level::kDebug, "write",
          fmt::format("committed {} events; {} unfinished tasks held for the next batch", batch_events,
                      held_tasks_.size()));
    return true;
  }

  void apply(const WorkflowRec& w) {
    if (w.kind == WorkflowEvent::Kind::started) {
      run_id_ = w.run_id;
      std::string version = options_.workflow_version;
      if (version.empty()) {
        version = time_(w.time).view().substr(0, 19);  // to the second, as Parsl's default
      }
      stmts_->workflow.bind_static(1, run_id_)
          .bind(2, options_.workflow_name.empty() ? std::string("unnamed") : options_.workflow_name)
          .bind(3, version)
          .bind_static(4, time_(w.time))
          .bind(5, this_host())
          .bind(6, this_user())
          .bind(7, w.run_dir)
          .run();
    } else {
      completed_ = w.completed;
      failed_ = w.failed;
      counts_changed_ = false;
      stmts_->workflow_end.bind_static(1, time_(w.time))
          .bind(2, std::int64_t{w.failed})
          .bind(3, std::int64_t{w.completed})
          .bind(4, w.run_id)
          .run();
    }
  }

  void apply(const TaskRec& e) {
    const auto id = static_cast<std::int64_t>(e.task);
    if (e.kind == TaskEvent::Kind::submitted) {
      TaskRow& row = tasks_[e.task];
      row.began = e.time;
      row.func_name = e.text;
      row.invoked = time_(e.time);
      row.memoized = e.memoized;
      row.stdout_path = e.stdout_path;
      row.stderr_path = e.stderr_path;
      if (auto early = described_early_.find(e.task); early != described_early_.end()) {
        describe(row, early->second);
        described_early_.erase(early);
      }
      TryRow& attempt = tries_[TryKey{e.task, 0}];
      attempt.began = e.time;
      status(id, e.state, e.time, 0);
      return;
    }
    if (e.kind == TaskEvent::Kind::dependency) {
      const std::string dep = std::to_string(e.dependency);
      if (TaskRow* row = tasks_.find(e.task)) {
        row->depends += row->depends.empty() ? dep : "," + dep;
      } else {
        stmts_->task_depends.bind(1, dep).bind(2, dep).bind(3, id).bind_static(4, run_id_).run();
      }
      return;
    }
    const std::int64_t attempt_id = parsl_try_id(e.try_id);
    status(id, e.state, e.time, attempt_id);
    const TryKey key{e.task, attempt_id};
    // A try begun in an earlier batch gets its changes gathered, one UPDATE at the batch's end.
    TryRow* attempt = tries_.find(key);
    if (!attempt && e.state == TaskState::launched && attempt_id > 0) {  // a retry
      attempt = &tries_[key];
      attempt->began = e.time;
    }
    const auto changed = [&]() -> TryRow& { return attempt ? *attempt : try_updates_[key]; };
    switch (e.state) {
      case TaskState::launched: {
        TryRow& row = changed();
        row.executor = e.text;
        row.launched = time_(e.time);
        break;
      }
      case TaskState::running:
        changed().running = time_(e.time);
        break;
      case TaskState::fail_retryable:
      case TaskState::exec_done:
      case TaskState::failed:
      case TaskState::dep_fail:
      case TaskState::memo_done:
      case TaskState::cancelled: {
        TryRow& row = changed();
        row.returned = time_(e.time);
        if (!e.text.empty()) row.fail_history = e.text;
        if (e.state == TaskState::fail_retryable) break;
        ++(is_failure(e.state) ? failed_ : completed_);
        counts_changed_ = true;
        if (TaskRow* task = tasks_.find(e.task)) {
          task->returned = time_(e.time);
          task->fail_count = e.fail_count;
          task->fail_cost = e.fail_cost;
        } else {
          task_returns_.push_back(TaskReturn{e.task, time_(e.time), e.fail_count, e.fail_cost});
        }
        break;
      }
      default:
        break;  // pending again, joining, running_ended: the status row says it all
    }
  }

  static void describe(TaskRow& row, const DescribedRec& e) {
    if (!e.inputs.empty()) row.inputs = e.inputs;
    if (!e.outputs.empty()) row.outputs = e.outputs;
    if (!e.memo_key.empty()) row.hashsum = detail::to_hex(e.memo_key);
  }

  // The front end may describe a call before the kernel's thread reports its submission: such a
  // description waits (described_early_) for the task's row.
  void apply(const DescribedRec& e) {
    if (TaskRow* row = tasks_.find(e.task)) return describe(*row, e);
    const auto text = [](const std::string& s) { return s.empty() ? std::nullopt : std::optional<std::string>(s); };
    stmts_->task_described.bind(1, text(e.inputs))
        .bind(2, text(e.outputs))
        .bind(3, e.memo_key.empty() ? std::nullopt : std::optional<std::string>(detail::to_hex(e.memo_key)))
        .bind(4, static_cast<std::int64_t>(e.task))
        .bind_static(5, run_id_)
        .run();
    if (stmts_->task_described.changes() == 0) {
      DescribedRec& early = described_early_.try_emplace(e.task, DescribedRec{e.task, {}, {}, {}}).first->second;
      if (!e.inputs.empty()) early.inputs = e.inputs;
      if (!e.outputs.empty()) early.outputs = e.outputs;
      if (!e.memo_key.empty()) early.memo_key = e.memo_key;
    }
  }

  void apply(const TryRec& e) {
    const TryKey key{e.task, parsl_try_id(e.try_id)};
    TryRow* row = tries_.find(key);
    if (!row) row = &try_updates_[key];
    row->block = e.block;
    row->hostname = e.hostname;
  }

  void apply(const BlockRec& e) {
    std::optional<std::string> job;
    if (!e.job_id.empty()) job = e.job_id;
    stmts_->block.bind_static(1, run_id_).bind(2, e.executor).bind(3, e.block).bind(4, job).bind_static(5, time_(e.time)).bind(6, e.status).run();
  }

  void apply(const PoolRec& e) {
    const Stamp t = time_(e.time);
    stmts_->node.bind_static(1, run_id_)
        .bind(2, e.hostname)
        .bind(3, e.pool)
        .bind(4, e.block)
        .bind(5, std::int64_t{e.cpu_count})
        .bind(6, static_cast<std::int64_t>(e.total_memory))
        .bind(7, std::int64_t{e.kind != PoolEvent::Kind::left})
        .bind(8, std::int64_t{e.worker_count})
        .bind(9, e.python_version)
        .bind_static(10, t)
        .bind_static(11, t)
        .run();
  }

  // Resource samples (two per task on a pool: its first and last) are inserted together too.
  struct ResourceRow {
    const ResourceSample* sample;  // in the batch's records
    Stamp time;
  };
  void apply(const ResourceSample& e) { resources_.push_back(ResourceRow{&e, time_(e.time)}); }
  void flush_resources() {
    stmts_->resource.insert(resources_.begin(), resources_.end(), [&](Statement& s, int b, const ResourceRow& r) {
      const ResourceSample& e = *r.sample;
      s.bind(b + 1, std::int64_t{parsl_try_id(e.try_id)})
          .bind(b + 2, static_cast<std::int64_t>(e.task.value))
          .bind_static(b + 3, run_id_)
          .bind_static(b + 4, r.time)
          .bind(b + 5, e.interval)
          .bind(b + 6, std::int64_t{e.pid})
          .bind(b + 7, static_cast<double>(e.children))
          .bind(b + 8, e.cpu_user)
          .bind(b + 9, e.cpu_system)
          .bind(b + 10, static_cast<double>(e.vms))
          .bind(b + 11, static_cast<double>(e.rss))
          .bind(b + 12, static_cast<double>(e.read_bytes))
          .bind(b + 13, static_cast<double>(e.write_bytes))
          .bind_static(b + 14, e.last ? "finished" : "running")
          .bind(b + 15, static_cast<double>(e.ctx_voluntary))
          .bind(b + 16, static_cast<double>(e.ctx_involuntary));
    });
    resources_.clear();
  }

  // Status rows, the most numerous (one per state change), are gathered during a batch and
  // inserted together (BulkInsert).
  struct StatusRow {
    std::int64_t task;
    TaskState state;
    Stamp time;
    std::int64_t attempt;
  };
  void status(std::int64_t task, TaskState state, EventTime time, std::int64_t attempt) {
    statuses_.push_back(StatusRow{task, state, time_(time), attempt});
  }
  void flush_statuses() {
    stmts_->status.insert(statuses_.begin(), statuses_.end(), [&](Statement& s, int b, const StatusRow& r) {
      s.bind(b + 1, r.task).bind_static(b + 2, to_string(r.state)).bind_static(b + 3, r.time)
          .bind_static(b + 4, run_id_).bind(b + 5, r.attempt);
    });
    statuses_.clear();
  }

  // Rows of unfinished tasks and tries, held in memory from one batch to the next (with their own
  // copies of the strings the batch's records held) until they finish or grow older than
  // hold_for_: in a burst most tasks end a few batches after they begin, and a row inserted
  // complete costs SQLite a fraction of a row inserted and then updated. The copies are made
  // once per batch a row waits; a batch that fails leaves held_tasks_/held_tries_ as they were.
  struct HeldTask {
    std::uint64_t id;
    TaskRow row;
    std::string func_name, stdout_path, stderr_path;
  };
  struct HeldTry {
    TryKey key;
    TryRow row;
    std::string executor, block, hostname;
  };

  // The held rows become rows of this batch (before its events), their text views the held copies.
  void take_held() {
    for (const HeldTask& h : held_tasks_) {
      TaskRow& row = tasks_[h.id];
      row = h.row;
      row.func_name = h.func_name;
      row.stdout_path = h.stdout_path;
      row.stderr_path = h.stderr_path;
    }
    for (const HeldTry& h : held_tries_) {
      TryRow& row = tries_[h.key];
      row = h.row;
      row.executor = h.executor;
      row.block = h.block;
      row.hostname = h.hostname;
    }
  }

  // The rows of tasks and tries of this batch, inserted whole, but for those held for the next.
  void flush_rows() {
    using TaskEntry = std::pair<std::uint64_t, TaskRow>;
    using TryEntry = std::pair<TryKey, TryRow>;
    ready_tasks_.clear();
    for (const TaskEntry& entry : tasks_) {
      const TaskRow& row = entry.second;
      if (row.returned || row.began < hold_until_)
        ready_tasks_.push_back(&entry);
      else
        next_held_tasks_.push_back(HeldTask{entry.first, row, std::string(row.func_name), std::string(row.stdout_path),
                                            std::string(row.stderr_path)});
    }
    ready_tries_.clear();
    for (const TryEntry& entry : tries_) {
      const TryRow& row = entry.second;
      if (row.returned || row.began < hold_until_)
        ready_tries_.push_back(&entry);
      else
        next_held_tries_.push_back(
            HeldTry{entry.first, row, std::string(row.executor), std::string(row.block), std::string(row.hostname)});
    }
    stmts_->task.insert(ready_tasks_.begin(), ready_tasks_.end(), [&](Statement& s, int b, const TaskEntry* entry) {
      const auto& [id, row] = *entry;
      s.bind(b + 1, static_cast<std::int64_t>(id)).bind_static(b + 2, run_id_);
      s.bind_static_or_null(b + 3, row.depends)
          .bind_static(b + 4, row.func_name)
          .bind(b + 5, std::int64_t{row.memoized})
          .bind_static(b + 6, row.hashsum)
          .bind_static(b + 7, row.inputs)
          .bind_static(b + 8, row.outputs)
          .bind_static(b + 9, row.stdout_path)
          .bind_static(b + 10, row.stderr_path)
          .bind_static(b + 11, row.invoked)
          .bind_static(b + 12, row.returned)
          .bind(b + 13, std::int64_t{row.fail_count})
          .bind(b + 14, row.fail_cost);
    });
    tasks_.clear();
    stmts_->attempt.insert(ready_tries_.begin(), ready_tries_.end(), [&](Statement& s, int b, const TryEntry* entry) {
      const auto& [key, row] = *entry;
      s.bind(b + 1, key.second)
          .bind(b + 2, static_cast<std::int64_t>(key.first))
          .bind_static(b + 3, run_id_)
          .bind_static_or_null(b + 4, row.block)
          .bind_static_or_null(b + 5, row.hostname)
          .bind_static(b + 6, row.executor)
          .bind_static(b + 7, row.launched)
          .bind_static(b + 8, row.running)
          .bind_static(b + 9, row.returned)
          .bind_static(b + 10, row.fail_history);
    });
    tries_.clear();
  }

  // Changes to rows of earlier batches: one UPDATE per row (a try's launch, start, place and end,
  // when they come in one batch, are one statement).
  struct TaskReturn {
    std::uint64_t task;
    Stamp returned;
    int fail_count;
    double fail_cost;
  };
  void flush_updates() {
    for (const auto& [key, row] : try_updates_)
      stmts_->try_changed.bind_static_or_null(1, row.executor)
          .bind_static(2, row.launched)
          .bind_static(3, row.running)
          .bind_static(4, row.returned)
          .bind_static(5, row.fail_history)
          .bind_static_or_null(6, row.block)
          .bind_static_or_null(7, row.hostname)
          .bind(8, key.second)
          .bind(9, static_cast<std::int64_t>(key.first))
          .bind_static(10, run_id_)
          .run();
    try_updates_.clear();
    for (const TaskReturn& r : task_returns_)
      stmts_->task_returned.bind_static(1, r.returned)
          .bind(2, std::int64_t{r.fail_count})
          .bind(3, r.fail_cost)
          .bind(4, static_cast<std::int64_t>(r.task))
          .bind_static(5, run_id_)
          .run();
    task_returns_.clear();
  }

  MonitoringOptions options_;
  std::string path_;
  LogFormatter log_format_;  // writer thread
  // Rows of unfinished tasks wait at most this long (3 commit intervals): with the default
  // interval every event is in the file within ~1 s (the kill -9 guarantee, docs/monitoring.md).
  std::chrono::system_clock::duration hold_for_;
  detail::Fd log_fd_;
  sqlite3* db_ = nullptr;
  bool index_at_close_ = false;  // kHashsumIndex: this writer made the tables
  std::unique_ptr<Statements> stmts_;

  std::mutex mutex_;
  std::condition_variable cv_;
  Chunks buffer_, spare_;       // under mutex_ (push)
  bool stop_ = false;           // under mutex_
  std::thread writer_;

  // Writer thread only.
  std::string run_id_;
  BatchRows<std::uint64_t, TaskRow> tasks_;
  BatchRows<TryKey, TryRow, TryKeyHash> tries_;
  BatchRows<TryKey, TryRow, TryKeyHash> try_updates_;  // "" and nullopt: unchanged
  std::vector<TaskReturn> task_returns_;
  EventTime hold_until_;                    // this batch: rows that began before are not held
  std::vector<HeldTask> held_tasks_, next_held_tasks_;
  std::vector<HeldTry> held_tries_, next_held_tries_;
  std::vector<const std::pair<std::uint64_t, TaskRow>*> ready_tasks_;
  std::vector<const std::pair<TryKey, TryRow>*> ready_tries_;
  std::unordered_map<std::uint64_t, DescribedRec> described_early_;
  std::vector<StatusRow> statuses_;
  std::vector<ResourceRow> resources_;
  int completed_ = 0, failed_ = 0;
  bool counts_changed_ = false;
  TimeText time_;
  std::size_t written_ = 0, lost_ = 0;  // events
  bool held_ = false;                   // a locked database holds the current batch back
  bool said_locked_ = false, said_lost_ = false;
};

}  // namespace

ObserverPtr make_monitoring_db(const std::string& path, MonitoringOptions options) {
  return std::make_shared<MonitoringDb>(path, std::move(options));
}

}  // namespace pervade
