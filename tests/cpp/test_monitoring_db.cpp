// The monitoring database writer against real SQLite files: Parsl's tables and row counts after
// a run, a bad path, a locked database, and a driver killed with SIGKILL.
#include <gtest/gtest.h>

#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <time.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "pervade/dataflow_kernel.hpp"
#include "pervade/errors.hpp"
#include "pervade/future.hpp"
#include "pervade/htex_executor.hpp"
#include "pervade/provider.hpp"
#include "pervade/shell.hpp"
#include "pervade/thread_pool_executor.hpp"
#include "observe/log_observer.hpp"
#include "pervade/monitoring.hpp"
#include "local_htex.hpp"

using namespace pervade;
namespace fs = std::filesystem;

namespace {

fs::path fresh_dir(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / ("pervade_mon_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// Read-only queries on the database a run wrote.
class Db {
 public:
  explicit Db(const fs::path& path) {
    EXPECT_EQ(sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
    sqlite3_busy_timeout(db_, 5000);
  }
  ~Db() { sqlite3_close(db_); }
  // The first column of the first row, as text ("" for NULL or no row).
  std::string text(const std::string& sql) {
    sqlite3_stmt* s = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr), SQLITE_OK) << sqlite3_errmsg(db_) << ": " << sql;
    std::string out;
    if (s && sqlite3_step(s) == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL)
      out = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    return out;
  }
  long count(const std::string& sql) {
    const std::string t = text(sql);
    return t.empty() ? -1 : std::stol(t);
  }

 private:
  sqlite3* db_ = nullptr;
};

TEST(MonitoringDb, RunWritesParslTablesWithOneRowPerTaskAndTry) {
  const fs::path dir = fresh_dir("run");
  const fs::path path = dir / "monitoring.db";
  std::string run_id;
  {
    MonitoringOptions mon;
    mon.workflow_name = "unit";
    Config cfg{.retries = 1};
    cfg.observers.push_back(make_monitoring_db(path, mon));
    cfg.run_dir = dir.string();
    DataFlowKernel dfk(std::move(cfg));
    run_id = dfk.run_id();
    std::atomic<int> calls{0};
    auto a = dfk.submit([] { return 1; });
    auto b = dfk.submit([](int x) { return x + 1; }, a);
    auto flaky = dfk.submit([&calls] {  // fails once, then succeeds on its retry
      if (calls.fetch_add(1) == 0) throw std::runtime_error("flaky");
      return 3;
    });
    auto bad = dfk.submit([]() -> int { throw std::runtime_error("always"); });
    auto after_bad = dfk.submit([](int x) { return x; }, bad);
    EXPECT_EQ(b.get(), 2);
    EXPECT_EQ(flaky.get(), 3);
    EXPECT_THROW(after_bad.get(), DependencyError);
    dfk.cleanup();
  }
  Db db(path);
  EXPECT_EQ(db.text("SELECT run_id FROM workflow"), run_id);
  EXPECT_EQ(db.text("SELECT workflow_name FROM workflow"), "unit");
  EXPECT_EQ(db.text("SELECT rundir FROM workflow"), dir.string());
  EXPECT_FALSE(db.text("SELECT time_completed FROM workflow").empty());
  EXPECT_EQ(db.count("SELECT tasks_completed_count FROM workflow"), 3);
  EXPECT_EQ(db.count("SELECT tasks_failed_count FROM workflow"), 2);
  EXPECT_EQ(db.count("SELECT count(*) FROM task"), 5);
  EXPECT_EQ(db.text("SELECT task_depends FROM task WHERE task_id=1"), "0");
  EXPECT_EQ(db.count("SELECT count(*) FROM task WHERE task_time_returned IS NULL"), 0);
  // flaky and bad ran twice (retries=1), the dependent of bad never ran: one try row each.
  EXPECT_EQ(db.count("SELECT count(*) FROM try"), 7);
  EXPECT_EQ(db.count("SELECT count(*) FROM try WHERE task_id=2"), 2);
  EXPECT_EQ(db.text("SELECT task_executor FROM try WHERE task_id=2 AND try_id=1"), "threads");
  EXPECT_EQ(db.text("SELECT task_fail_history FROM try WHERE task_id=2 AND try_id=0"), "flaky");
  EXPECT_FALSE(db.text("SELECT task_try_time_running FROM try WHERE task_id=0").empty());
  EXPECT_EQ(db.count("SELECT task_fail_count FROM task WHERE task_id=3"), 2);
  // Status rows: pending, launched, running, running_ended, exec_done for a, b; flaky once
  // more (fail_retryable and a second try); bad fails twice; its dependent: pending, dep_fail.
  EXPECT_EQ(db.count("SELECT count(*) FROM status WHERE task_id=0"), 5);
  EXPECT_EQ(db.count("SELECT count(*) FROM status WHERE task_id=2"), 9);
  EXPECT_EQ(db.text("SELECT group_concat(task_status_name) FROM (SELECT task_status_name FROM status "
                    "WHERE task_id=4 ORDER BY timestamp, rowid)"),
            "pending,dep_fail");
  EXPECT_EQ(db.text("PRAGMA journal_mode"), "wal");
  // Parsl's index, made when the writer closed (it made the tables).
  EXPECT_EQ(db.count("SELECT count(*) FROM sqlite_master WHERE type='index' AND name='ix_task_task_hashsum'"), 1);
}

// A task whose rows were committed in an earlier batch is completed by UPDATEs gathered per row:
// the task blocks until the database shows it running, with its task and try rows (an unfinished
// task's rows are held back for at most 3 commit intervals), then fails once and succeeds on its retry.
TEST(MonitoringDb, RowsOfEarlierBatchesAreCompletedInLaterOnes) {
  const fs::path dir = fresh_dir("later");
  const fs::path path = dir / "monitoring.db";
  {
    MonitoringOptions mon;
    mon.commit_interval = std::chrono::milliseconds(10);
    Config cfg{.retries = 1};
    cfg.observers.push_back(make_monitoring_db(path, mon));
    DataFlowKernel dfk(std::move(cfg));
    std::mutex m;
    std::condition_variable cv;
    bool released = false;
    std::atomic<int> calls{0};
    auto flaky = dfk.submit([&] {
      if (calls.fetch_add(1) == 0) {
        std::unique_lock lock(m);
        if (!cv.wait_for(lock, std::chrono::seconds(20), [&] { return released; })) return -1;
        throw std::runtime_error("flaky");
      }
      return 3;
    });
    bool committed = false;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!committed && std::chrono::steady_clock::now() < deadline) {
      if (fs::exists(path)) {
        Db db(path);
        committed = db.count("SELECT count(*) FROM status WHERE task_id=0 AND task_status_name='running'") == 1 &&
                    db.count("SELECT count(*) FROM task WHERE task_id=0 AND task_time_returned IS NULL") == 1 &&
                    db.count("SELECT count(*) FROM try WHERE task_id=0 AND task_try_time_returned IS NULL") == 1;
      }
      if (!committed) std::this_thread::sleep_for(std::chrono::milliseconds(10));  // polling interval
    }
    EXPECT_TRUE(committed) << "the running task's rows were never committed";
    {
      std::lock_guard lock(m);
      released = true;
    }
    cv.notify_all();
    EXPECT_EQ(flaky.get(), 3);
    dfk.cleanup();
  }
  Db db(path);
  EXPECT_EQ(db.count("SELECT count(*) FROM task"), 1);
  EXPECT_FALSE(db.text("SELECT task_time_returned FROM task WHERE task_id=0").empty());
  EXPECT_EQ(db.count("SELECT task_fail_count FROM task WHERE task_id=0"), 1);
  EXPECT_EQ(db.count("SELECT count(*) FROM try WHERE task_id=0"), 2);
  for (const char* attempt : {"0", "1"}) {
    const std::string where = std::string(" FROM try WHERE task_id=0 AND try_id=") + attempt;
    EXPECT_EQ(db.text("SELECT task_executor" + where), "threads") << attempt;
    EXPECT_FALSE(db.text("SELECT task_try_time_launched" + where).empty()) << attempt;
    EXPECT_FALSE(db.text("SELECT task_try_time_running" + where).empty()) << attempt;
    EXPECT_FALSE(db.text("SELECT task_try_time_returned" + where).empty()) << attempt;
  }
  EXPECT_EQ(db.text("SELECT task_fail_history FROM try WHERE task_id=0 AND try_id=0"), "flaky");
  EXPECT_EQ(db.text("SELECT task_fail_history FROM try WHERE task_id=0 AND try_id=1"), "");
  EXPECT_EQ(db.count("SELECT tasks_completed_count FROM workflow"), 1);
  EXPECT_EQ(db.count("SELECT count(*) FROM status WHERE task_id=0"), 9);
}

// Tasks that end batches after they begin: their rows wait in memory (held) across batches, with
// copies of their text, and are inserted complete. Each first try blocks until the database shows
// every task running, then fails; the retries succeed. Whether a row was held, or inserted and
// updated (a slow machine ages it out), every row must end complete and right.
TEST(MonitoringDb, RowsOfTasksEndingInLaterBatchesAreWrittenComplete) {
  const fs::path dir = fresh_dir("held");
  const fs::path path = dir / "monitoring.db";
  constexpr int kTasks = 20;
  {
    MonitoringOptions mon;
    mon.commit_interval = std::chrono::milliseconds(100);
    Config cfg{.retries = 1};
    cfg.executors.push_back(std::make_shared<ThreadPoolExecutor>(kTasks, "threads"));
    cfg.observers.push_back(make_monitoring_db(path, mon));
    DataFlowKernel dfk(std::move(cfg));
    std::mutex m;
    std::condition_variable cv;
    bool released = false;
    std::vector<std::atomic<int>> calls(kTasks);
    std::vector<Future<int>> futures;
    for (int i = 0; i < kTasks; ++i)
      futures.push_back(dfk.submit([&, i] {
        if (calls[i].fetch_add(1) == 0) {
          std::unique_lock lock(m);
          if (!cv.wait_for(lock, std::chrono::seconds(20), [&] { return released; })) return -1;
          throw std::runtime_error("flaky " + std::to_string(i));
        }
        return i;
      }));
    long running = 0;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (running < kTasks && std::chrono::steady_clock::now() < deadline) {
      if (fs::exists(path)) running = Db(path).count("SELECT count(*) FROM status WHERE task_status_name='running'");
      if (running < kTasks) std::this_thread::sleep_for(std::chrono::milliseconds(10));  // polling interval
    }
    EXPECT_EQ(running, kTasks) << "the tasks' running states were never committed";
    {
      std::lock_guard lock(m);
      released = true;
    }
    cv.notify_all();
    for (int i = 0; i < kTasks; ++i) EXPECT_EQ(futures[i].get(), i);
    dfk.cleanup();
  }
  Db db(path);
  EXPECT_EQ(db.count("SELECT count(*) FROM task"), kTasks);
  EXPECT_EQ(db.count("SELECT count(*) FROM task WHERE task_time_returned IS NOT NULL AND task_fail_count=1 AND "
                     "task_func_name != '' AND task_time_invoked IS NOT NULL"),
            kTasks);
  EXPECT_EQ(db.count("SELECT count(*) FROM try"), 2 * kTasks);
  EXPECT_EQ(db.count("SELECT count(*) FROM try WHERE task_executor='threads' AND task_try_time_launched IS NOT NULL "
                     "AND task_try_time_running IS NOT NULL AND task_try_time_returned IS NOT NULL"),
            2 * kTasks);
  for (int i = 0; i < kTasks; ++i)
    EXPECT_EQ(db.text(fmt::format("SELECT task_fail_history FROM try WHERE task_id={} AND try_id=0", i)),
              fmt::format("flaky {}", i));
  EXPECT_EQ(db.count("SELECT count(*) FROM try WHERE try_id=1 AND task_fail_history IS NULL"), kTasks);
  EXPECT_EQ(db.count("SELECT count(*) FROM status"), 9 * kTasks);
  EXPECT_EQ(db.count("SELECT tasks_completed_count FROM workflow"), kTasks);
}

// The C++ API's HighThroughputExecutor (a LocalProvider block of the real pervade-pool running
// shell commands) with the database: each try names its executor, block and host; the block's
// states and the pool's joining and leaving are rows; the executor reports running_ended.
// (Shell commands run by the pool itself are not resource-sampled: docs/monitoring.md.)
TEST(MonitoringDb, HighThroughputExecutorFromCppRecordsTriesBlocksAndPools) {
  const fs::path dir = fresh_dir("htex");
  const fs::path path = dir / "monitoring.db";
  {
    Config cfg{.executors = {std::make_shared<HighThroughputExecutor>(local_htex_options(dir))}};
    cfg.observers.push_back(make_monitoring_db(path, {}));
    DataFlowKernel dfk(std::move(cfg));
    auto ok = dfk.submit(Shell{"true"});
    auto bad = dfk.submit(Shell{"exit 3"});
    EXPECT_EQ(ok.get(), 0);
    EXPECT_THROW(bad.get(), BashExitFailure);
    dfk.cleanup();
  }
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  Db db(path);
  EXPECT_EQ(db.count("SELECT count(*) FROM task"), 2);
  EXPECT_EQ(db.count("SELECT count(*) FROM try WHERE task_executor='htex' AND block_id='0' AND hostname='" +
                     std::string(host) + "' AND task_try_time_returned IS NOT NULL"),
            2);
  EXPECT_EQ(db.count("SELECT count(*) FROM status WHERE task_status_name='running_ended'"), 2);
  EXPECT_EQ(db.count("SELECT count(*) FROM status WHERE task_status_name='failed'"), 1);
  // Submitted with the provider's job id; cancelled at cleanup (the provider is polled every
  // strategy period, which this short run does not reach).
  EXPECT_EQ(db.count("SELECT count(*) FROM block WHERE executor_label='htex' AND block_id='0' AND status='PENDING' "
                     "AND job_id IS NOT NULL"),
            1);
  EXPECT_EQ(db.text("SELECT status FROM block ORDER BY timestamp DESC LIMIT 1"), "SCALED_IN");
  // Joined, then busy (a task sent while it held none) and idle (its last result back), once or
  // twice for the two tasks: Parsl writes a row at registration, each dispatch and each result.
  EXPECT_GE(db.count("SELECT count(*) FROM node WHERE block_id='0' AND active=1 AND worker_count=2"), 3);
  EXPECT_EQ(db.count("SELECT count(*) FROM node WHERE block_id='0' AND active=0"), 1);
  EXPECT_FALSE(db.text("SELECT time_completed FROM workflow").empty());
}

// Resource sampling on the thread-pool executor: a first and a last sample per task,
// the last one counting the CPU the task's thread used.
TEST(MonitoringDb, ThreadPoolTasksAreSampledAtStartAndEnd) {
  const fs::path dir = fresh_dir("resource");
  const fs::path path = dir / "monitoring.db";
  {
    MonitoringOptions mon;
    mon.resource_monitoring_interval = 3600;  // longer than the task: the first and last samples only
    Config cfg;
    cfg.observers.push_back(make_monitoring_db(path, mon));
    DataFlowKernel dfk(std::move(cfg));
    auto burn = dfk.submit([] {  // until this thread has used 50 ms of CPU
      timespec t{};
      double x = 0;
      do {
        for (int i = 0; i < 100000; ++i) x += i * 0.5;
        ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
      } while (t.tv_sec == 0 && t.tv_nsec < 50'000'000);
      return x > 0;
    });
    EXPECT_TRUE(burn.get());
    dfk.cleanup();
  }
  Db db(path);
  EXPECT_EQ(db.count("SELECT count(*) FROM resource WHERE task_id=0 AND try_id=0"), 2);
  EXPECT_EQ(db.count("SELECT count(*) FROM resource WHERE psutil_process_status='finished'"), 1);
  const double cpu = std::stod(db.text("SELECT psutil_process_time_user + psutil_process_time_system FROM resource "
                                       "WHERE psutil_process_status='finished'"));
  EXPECT_GE(cpu, 0.03);
  EXPECT_GT(db.count("SELECT psutil_process_memory_resident FROM resource LIMIT 1"), 0);
}

// A task shorter than kFirstSampleAfter has one sample, its last (as in Parsl); a longer one
// keeps its first, stamped with its start.
TEST(MonitoringDb, ThreadPoolTasksShorterThanTheFirstSampleDelayHaveOnlyTheirLastSample) {
  const fs::path dir = fresh_dir("resource_short");
  const fs::path path = dir / "monitoring.db";
  {
    MonitoringOptions mon;
    mon.resource_monitoring_interval = 3600;
    Config cfg;
    cfg.observers.push_back(make_monitoring_db(path, mon));
    DataFlowKernel dfk(std::move(cfg));
    auto quick = dfk.submit([] { return 1; });
    auto slow = dfk.submit([] {
      std::this_thread::sleep_for(3 * kFirstSampleAfter);  // the task's own length, not a wait for a race
      return 2;
    });
    EXPECT_EQ(quick.get() + slow.get(), 3);
    dfk.cleanup();
  }
  Db db(path);
  EXPECT_EQ(db.text("SELECT group_concat(psutil_process_status) FROM resource WHERE task_id=0"), "finished");
  EXPECT_EQ(db.text("SELECT group_concat(psutil_process_status) FROM "
                    "(SELECT psutil_process_status FROM resource WHERE task_id=1 ORDER BY timestamp)"),
            "running,finished");
  // The first sample, reported at the task's end, is stamped with the task's start: the task
  // slept 30 ms between the two.
  EXPECT_EQ(db.count("SELECT count(*) FROM resource f JOIN resource l ON l.task_id = f.task_id WHERE f.task_id=1 "
                     "AND f.psutil_process_status='running' AND l.psutil_process_status='finished' "
                     "AND (julianday(l.timestamp) - julianday(f.timestamp)) * 86400 >= 0.025"),
            1);
}

// A task abandoned at cleanup (its thread cannot be interrupted) has no last sample: its first
// one, written then, is what it leaves.
TEST(MonitoringDb, AThreadPoolTaskAbandonedAtCleanupKeepsItsFirstSample) {
  struct Gate {
    std::atomic<bool> running{false}, returned{false};
    std::mutex mutex;
    std::condition_variable cv;
    bool open = false;
  };
  auto gate = std::make_shared<Gate>();
  const fs::path dir = fresh_dir("resource_abandoned");
  const fs::path path = dir / "monitoring.db";
  {
    MonitoringOptions mon;
    mon.resource_monitoring_interval = 3600;
    Config cfg;
    cfg.executors = {std::make_shared<ThreadPoolExecutor>(1, "pool", std::chrono::milliseconds(100))};
    cfg.observers.push_back(make_monitoring_db(path, mon));
    DataFlowKernel dfk(std::move(cfg));
    auto stuck = dfk.submit([gate] {
      gate->running = true;
      std::unique_lock lock(gate->mutex);
      gate->cv.wait(lock, [&] { return gate->open; });
      gate->returned = true;
      return 1;
    });
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (!gate->running.load() && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
    ASSERT_TRUE(gate->running.load());
    std::this_thread::sleep_for(2 * kFirstSampleAfter);  // the task's age at cleanup, not a wait for a race
    dfk.cleanup();  // abandons it after the grace
  }
  {
    std::lock_guard lock(gate->mutex);
    gate->open = true;
  }
  gate->cv.notify_all();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!gate->returned.load() && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  EXPECT_TRUE(gate->returned.load());
  Db db(path);
  EXPECT_EQ(db.text("SELECT group_concat(psutil_process_status) FROM resource WHERE task_id=0"), "running");
}

TEST(MonitoringDb, UnusablePathIsAConfigurationErrorNamingIt) {
  try {
    make_monitoring_db("/nonexistent_dir_for_pervade/monitoring.db");
    FAIL() << "expected ConfigurationError";
  } catch (const ConfigurationError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent_dir_for_pervade/monitoring.db"), std::string::npos) << e.what();
  }
}

// What the writer reports (MonitoringOptions::report), collected for a test.
struct Reports {
  std::mutex mutex;
  std::condition_variable changed;
  std::vector<std::pair<int, std::string>> seen;
  std::function<void(int, std::string_view)> sink() {
    return [this](int level, std::string_view message) {
      std::lock_guard lock(mutex);
      seen.emplace_back(level, std::string(message));
      changed.notify_all();
    };
  }
  bool wait_for(int level, const std::string& text) {
    std::unique_lock lock(mutex);
    return changed.wait_for(lock, std::chrono::seconds(60), [&] {
      for (const auto& [l, m] : seen)
        if (l == level && m.find(text) != std::string::npos) return true;
      return false;
    });
  }
};

std::string file_text(const fs::path& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Another connection holds the write lock while tasks run: they finish all the same, the writer
// says once that the database is locked (report, its log, stderr) and writes every event once
// the lock is gone.
TEST(MonitoringDb, LockedDatabaseHoldsEventsBackAndWritesThemWhenFree) {
  const fs::path dir = fresh_dir("locked");
  const fs::path path = dir / "monitoring.db";
  Reports reports;
  MonitoringOptions mon;
  mon.log_path = (dir / "database_manager.log").string();
  mon.report = reports.sink();
  Config cfg;
  cfg.observers.push_back(make_monitoring_db(path, mon));
  sqlite3* other = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &other), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(other, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr), SQLITE_OK);
  testing::internal::CaptureStderr();
  {
    DataFlowKernel dfk(std::move(cfg));
    std::vector<Future<int>> futures;
    for (int i = 0; i < 20; ++i) futures.push_back(dfk.submit([i] { return i; }));
    for (int i = 0; i < 20; ++i) EXPECT_EQ(futures[i].get(), i);  // the workflow does not wait
    EXPECT_TRUE(reports.wait_for(log_level::kWarning, "is locked by another connection"));
    sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr);
    dfk.cleanup();
  }
  sqlite3_close(other);
  const std::string err = testing::internal::GetCapturedStderr();
  const auto first = err.find("WARNING: the monitoring database");
  ASSERT_NE(first, std::string::npos) << err;
  EXPECT_EQ(err.find("WARNING: the monitoring database", first + 1), std::string::npos) << err;
  EXPECT_EQ(err.find("ERROR"), std::string::npos) << err;
  Db db(path);
  EXPECT_EQ(db.count("SELECT count(*) FROM task"), 20);
  EXPECT_EQ(db.count("SELECT count(*) FROM status WHERE task_status_name='exec_done'"), 20);
  EXPECT_NE(db.text("SELECT time_completed FROM workflow"), "");
  const std::string log = file_text(dir / "database_manager.log");
  EXPECT_NE(log.find("pervade.monitoring.db_manager:0 start INFO: Database manager started"), std::string::npos) << log;
  EXPECT_NE(log.find("WARNING: the monitoring database"), std::string::npos) << log;
  EXPECT_NE(log.find("is free again"), std::string::npos) << log;
  EXPECT_NE(log.find("0 lost"), std::string::npos) << log;
}

// Rows of unfinished tasks held in memory when the database gets locked: the batches that fail
// leave them as they were, and once the lock is gone every task has its complete rows, once.
TEST(MonitoringDb, RowsHeldForUnfinishedTasksOutlastALockedDatabase) {
  const fs::path dir = fresh_dir("held_locked");
  const fs::path path = dir / "monitoring.db";
  constexpr int kTasks = 4;
  Reports reports;
  MonitoringOptions mon;
  mon.commit_interval = std::chrono::milliseconds(200);  // rows held up to 0.6 s
  mon.report = reports.sink();
  Config cfg;
  cfg.executors.push_back(std::make_shared<ThreadPoolExecutor>(kTasks, "threads"));
  cfg.observers.push_back(make_monitoring_db(path, mon));
  sqlite3* other = nullptr;
  testing::internal::CaptureStderr();
  {
    DataFlowKernel dfk(std::move(cfg));
    std::mutex m;
    std::condition_variable cv;
    bool released = false;
    std::vector<Future<int>> futures;
    for (int i = 0; i < kTasks; ++i)
      futures.push_back(dfk.submit([&, i] {
        std::unique_lock lock(m);
        if (!cv.wait_for(lock, std::chrono::seconds(20), [&] { return released; })) return -1;
        return i;
      }));
    long running = 0;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (running < kTasks && std::chrono::steady_clock::now() < deadline) {
      if (fs::exists(path)) running = Db(path).count("SELECT count(*) FROM status WHERE task_status_name='running'");
      if (running < kTasks) std::this_thread::sleep_for(std::chrono::milliseconds(5));  // polling interval
    }
    ASSERT_EQ(running, kTasks);
    ASSERT_EQ(sqlite3_open(path.c_str(), &other), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(other, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr), SQLITE_OK);
    {
      std::lock_guard lock(m);
      released = true;
    }
    cv.notify_all();
    for (int i = 0; i < kTasks; ++i) EXPECT_EQ(futures[i].get(), i);
    EXPECT_TRUE(reports.wait_for(log_level::kWarning, "is locked by another connection"));
    sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr);
    dfk.cleanup();
  }
  sqlite3_close(other);
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(err.find("ERROR"), std::string::npos) << err;
  Db db(path);
  EXPECT_EQ(db.count("SELECT count(*) FROM task"), kTasks);
  EXPECT_EQ(db.count("SELECT count(*) FROM task WHERE task_time_returned IS NOT NULL AND task_func_name != ''"), kTasks);
  EXPECT_EQ(db.count("SELECT count(*) FROM try"), kTasks);
  EXPECT_EQ(db.count("SELECT count(*) FROM try WHERE task_executor='threads' AND task_try_time_launched IS NOT NULL "
                     "AND task_try_time_running IS NOT NULL AND task_try_time_returned IS NOT NULL"),
            kTasks);
  EXPECT_EQ(db.count("SELECT count(*) FROM status"), 5 * kTasks);
}

// Still locked at cleanup: the writer gives the held events up after close_timeout, says so,
// and cleanup() returns.
TEST(MonitoringDb, DatabaseLockedPastCleanupLosesEventsLoudlyAndCleanupReturns) {
  const fs::path dir = fresh_dir("locked_at_end");
  const fs::path path = dir / "monitoring.db";
  Reports reports;
  MonitoringOptions mon;
  mon.report = reports.sink();
  mon.close_timeout = std::chrono::milliseconds(200);
  Config cfg;
  cfg.observers.push_back(make_monitoring_db(path, mon));
  sqlite3* other = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &other), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(other, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr), SQLITE_OK);
  testing::internal::CaptureStderr();
  {
    DataFlowKernel dfk(std::move(cfg));
    EXPECT_EQ(dfk.submit([] { return 5; }).get(), 5);
    dfk.cleanup();
  }
  const std::string err = testing::internal::GetCapturedStderr();
  sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_close(other);
  EXPECT_NE(err.find("events were not written"), std::string::npos) << err;
  EXPECT_TRUE(reports.wait_for(log_level::kError, "monitoring events were lost"));
}

TEST(MonitoringDb, WriterLogsAsJsonLinesWithParslKeys) {
  const fs::path dir = fresh_dir("jsonlog");
  MonitoringOptions mon;
  mon.log_path = (dir / "database_manager.jsonlog").string();
  mon.log_json = true;
  mon.log_level = log_level::kDebug;
  Config cfg;
  cfg.observers.push_back(make_monitoring_db(dir / "monitoring.db", mon));
  {
    DataFlowKernel dfk(std::move(cfg));
    EXPECT_EQ(dfk.submit([] { return 5; }).get(), 5);
    dfk.cleanup();
  }
  const std::string log = file_text(dir / "database_manager.jsonlog");
  EXPECT_EQ(log.rfind("{\"created\": ", 0), 0u) << log;
  EXPECT_NE(log.find("\"name\": \"pervade.monitoring.db_manager\""), std::string::npos) << log;
  EXPECT_NE(log.find("\"levelname\": \"DEBUG\", \"msg\": \"committed "), std::string::npos) << log;
  EXPECT_NE(log.find("\"parsl.dfk\": "), std::string::npos) << log;  // the run id, once it started
}

// A driver killed with SIGKILL: what it had committed is there. The child runs tasks one after
// another and reports each finished id on a pipe; the parent waits until the database shows a
// finished task, kills the child, and checks that every task up to that one has its rows.
TEST(MonitoringDb, EventsSurviveSigkillOfTheDriver) {
  const fs::path dir = fresh_dir("kill");
  const fs::path path = dir / "monitoring.db";
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(fds[0]);
    Config cfg;
    cfg.observers.push_back(make_monitoring_db(path, {}));
    DataFlowKernel dfk(std::move(cfg));
    for (int i = 0;; ++i) {  // until killed
      dfk.submit([i] { return i; }).get();
      if (::write(fds[1], &i, sizeof i) != sizeof i) ::_exit(1);
    }
  }
  ::close(fds[1]);
  struct KillOnExit {  // the child never outlives the test, whatever fails
    pid_t pid;
    ~KillOnExit() {
      if (pid > 0) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
      }
    }
  } guard{child};
  int reported = -1;
  ASSERT_EQ(::read(fds[0], &reported, sizeof reported), static_cast<ssize_t>(sizeof reported));
  // Wait (bounded) until the database shows some task finished while the driver still runs.
  long done_in_db = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    if (fs::exists(path)) {
      Db db(path);
      done_in_db = db.count("SELECT count(*) FROM status WHERE task_status_name='exec_done'");
      if (done_in_db >= 10) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // polling interval
  }
  ASSERT_GE(done_in_db, 10) << "no committed events while the driver ran";
  ::kill(child, SIGKILL);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  guard.pid = 0;
  EXPECT_TRUE(WIFSIGNALED(status));
  ::close(fds[0]);
  Db db(path);
  const long finished = db.count("SELECT count(*) FROM status WHERE task_status_name='exec_done'");
  EXPECT_GE(finished, done_in_db);
  // Every finished task has its task row, its try row and all its earlier status rows.
  EXPECT_EQ(db.count("SELECT count(*) FROM task WHERE task_time_returned IS NOT NULL"), finished);
  EXPECT_EQ(db.count("SELECT count(*) FROM try WHERE task_try_time_returned IS NOT NULL"), finished);
  EXPECT_EQ(db.count("SELECT count(DISTINCT task_id) FROM status WHERE task_status_name='pending' AND task_id IN "
                     "(SELECT task_id FROM status WHERE task_status_name='exec_done')"),
            finished);
  EXPECT_EQ(db.text("SELECT time_completed FROM workflow"), "");  // the run never ended
}

}  // namespace
