// LogObserver fed synthetic events (no kernel): the lines it writes, levels, JSON lines, the
// sink's batches, several emitting threads.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "observe/log_observer.hpp"

namespace pervade {
namespace {

namespace fs = std::filesystem;

class LogObserverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("pervade_log_test_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path() const { return (dir_ / "pervade.log").string(); }
  std::vector<std::string> lines() const {
    std::ifstream in(path());
    std::vector<std::string> out;
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
  }

  fs::path dir_;
};

TaskEvent task_event(TaskEvent::Kind kind, std::uint64_t id, TaskState state, std::uint32_t try_id = 0,
                     std::string_view executor = "") {
  TaskEvent e{};
  e.kind = kind;
  e.time = std::chrono::system_clock::now();
  e.task = TaskId{id};
  e.try_id = try_id;
  e.state = state;
  e.func_name = "double";
  e.executor = executor;
  return e;
}

bool contains(const std::string& s, std::string_view part) { return s.find(part) != std::string::npos; }

TEST_F(LogObserverTest, WritesTaskEventsWithParslExtras) {
  {
    LogObserver log({.path = path()});
    WorkflowEvent start{WorkflowEvent::Kind::started, std::chrono::system_clock::now(), "run-1", "/tmp/run/000"};
    log.on_workflow(start);
    log.on_task(task_event(TaskEvent::Kind::submitted, 7, TaskState::pending));
    auto dep = task_event(TaskEvent::Kind::dependency, 7, TaskState::pending);
    dep.dependency = TaskId{3};
    log.on_task(dep);
    log.on_task(task_event(TaskEvent::Kind::state, 7, TaskState::launched, 1, "threads"));
    auto failed = task_event(TaskEvent::Kind::state, 7, TaskState::failed, 2, "threads");
    failed.error = "ValueError: bad";
    failed.fail_count = 2;
    log.on_task(failed);
    log.flush();  // written before stop: flush alone must be enough
    const auto got = lines();
    ASSERT_EQ(got.size(), 5u);
    EXPECT_TRUE(contains(got[0], "pervade.dataflow.dflow:0 __init__ INFO: Starting DataFlowKernel: run id run-1"));
    EXPECT_TRUE(contains(got[1], "DEBUG: Task 7 submitted for App double, initializing state to pending "
                                 "parsl.task=7 parsl.app_name=double parsl.task_state=pending"));
    EXPECT_TRUE(contains(got[2], "DEBUG: Task 7 waiting on task 3 parsl.task=7 parsl.app_name=double "
                                 "parsl.dependency_task=3"));
    // Parsl counts tries from 0.
    EXPECT_TRUE(contains(got[3], "update_task_state DEBUG: Task 7 try 0 launched on executor threads parsl.task=7 "
                                 "parsl.try_id=0 parsl.app_name=double parsl.executor=threads "
                                 "parsl.task_state=launched"));
    EXPECT_TRUE(contains(got[4], "ERROR: Task 7 changing state to failed (fail_count 2): ValueError: bad "
                                 "parsl.task=7 parsl.try_id=1"));
    // Parsl's layout: created, asctime, process, thread, logger:line, function, level.
    std::istringstream first(got[1]);
    double created = 0;
    std::string date, time, process;
    first >> created >> date >> time >> process;
    EXPECT_GT(created, 1.6e9);
    EXPECT_EQ(date.size(), 10u);
    EXPECT_EQ(process, "MainProcess-" + std::to_string(::getpid()));
  }
}

TEST_F(LogObserverTest, LevelFiltersTheFile) {
  LogObserver log({.path = path(), .level = log_level::kInfo});
  EXPECT_EQ(log.threshold(), log_level::kInfo);
  log.on_task(task_event(TaskEvent::Kind::submitted, 1, TaskState::pending));
  log.on_task(task_event(TaskEvent::Kind::state, 1, TaskState::launched, 1, "threads"));
  log.on_task(task_event(TaskEvent::Kind::state, 1, TaskState::dep_fail));
  log.on_block({std::chrono::system_clock::now(), "htex", "0", "1234", "RUNNING", ""});
  log.flush();
  const auto got = lines();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_TRUE(contains(got[0], "INFO: Task 1 changing state to dep_fail"));
  EXPECT_TRUE(contains(got[1], "pervade.executors:0 block_status INFO: Block 0 of executor htex (job 1234) is RUNNING"));
}

TEST_F(LogObserverTest, CheckpointPassesAreLoggedAsParslLogsThem) {
  const auto pass = [](std::size_t n) {
    WorkflowEvent e{WorkflowEvent::Kind::checkpointed, std::chrono::system_clock::now(), {}, {}};
    e.checkpointed = n;
    return e;
  };
  {
    LogObserver info({.path = path(), .level = log_level::kInfo});
    info.on_workflow(pass(3));
    info.on_workflow(pass(0));  // DEBUG: not written at INFO
  }
  auto got = lines();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_TRUE(contains(got[0], "pervade.dataflow.memoization:0 checkpoint INFO: Done checkpointing 3 tasks")) << got[0];
  std::filesystem::remove(path());
  {
    LogObserver debug({.path = path(), .level = log_level::kDebug});
    debug.on_workflow(pass(0));
  }
  got = lines();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_TRUE(contains(got[0], "DEBUG: No tasks checkpointed in this pass.")) << got[0];
}

TEST_F(LogObserverTest, JsonLinesCarryParslKeys) {
  {
    LogObserver log({.path = path(), .format = LogObserverOptions::Format::json_lines});
    log.on_workflow({WorkflowEvent::Kind::started, std::chrono::system_clock::now(), "run-9", ""});
    auto e = task_event(TaskEvent::Kind::state, 4, TaskState::fail_retryable, 1, "htex");
    e.error = "a \"quoted\"\nerror";
    log.on_task(e);
    log.write_line("{\"from\": \"python\"}");
  }  // the destructor writes what is left
  const auto got = lines();
  ASSERT_EQ(got.size(), 3u);
  EXPECT_TRUE(contains(got[0], "\"name\": \"pervade.dataflow.dflow\""));
  EXPECT_TRUE(contains(got[0], "\"parsl.dfk\": \"run-9\""));
  EXPECT_TRUE(contains(got[1], "\"levelname\": \"INFO\""));
  EXPECT_TRUE(contains(got[1], "a \\\"quoted\\\"\\nerror"));
  EXPECT_TRUE(contains(got[1], "\"parsl.dfk\": \"run-9\", \"parsl.task\": \"4\", \"parsl.try_id\": \"0\""));
  EXPECT_TRUE(contains(got[1], "\"parsl.executor\": \"htex\", \"parsl.task_state\": \"fail_retryable\"}"));
  EXPECT_EQ(got[2], "{\"from\": \"python\"}");
}

TEST_F(LogObserverTest, SinkGetsRecordsAtItsLevelWithoutAFile) {
  std::mutex m;
  std::vector<LogEntry> got;
  LogObserver log({.forward_level = log_level::kInfo, .sink = [&](std::vector<LogEntry>& batch) {
                     std::lock_guard lock(m);
                     for (auto& e : batch) got.push_back(std::move(e));
                   }});
  EXPECT_EQ(log.threshold(), log_level::kInfo);
  log.on_task(task_event(TaskEvent::Kind::state, 5, TaskState::running, 1, "threads"));  // DEBUG: not wanted
  auto dep_fail = task_event(TaskEvent::Kind::state, 5, TaskState::dep_fail);
  dep_fail.error = "Dependency failure for task 5";
  log.on_task(dep_fail);
  log.on_pool({PoolEvent::Kind::left, std::chrono::system_clock::now(), "htex", "m1", "0", "node1", 4, 8, 1u << 30,
               "3.11", "heartbeat lost"});
  log.flush();
  std::lock_guard lock(m);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].level, log_level::kInfo);
  EXPECT_EQ(got[0].logger, "pervade.dataflow.dflow");
  EXPECT_EQ(got[0].extras.front(), (std::pair<std::string_view, std::string>{"parsl.task", "5"}));
  EXPECT_EQ(got[1].level, log_level::kWarning);
  EXPECT_EQ(got[1].message, "Pool m1 of block 0 on node1 left executor htex: heartbeat lost");
}

TEST_F(LogObserverTest, EveryEventOfConcurrentThreadsIsWritten) {
  constexpr int kThreads = 4, kEach = 20000;
  {
    LogObserver log({.path = path()});
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
      threads.emplace_back([&log, t] {
        for (int i = 0; i < kEach; ++i)
          log.on_task(task_event(TaskEvent::Kind::state, t * kEach + i, TaskState::exec_done, 1, "threads"));
      });
    for (auto& t : threads) t.join();
  }
  EXPECT_EQ(lines().size(), static_cast<std::size_t>(kThreads * kEach));
}

TEST_F(LogObserverTest, EventsAfterStopAreIgnored) {
  LogObserver log({.path = path()});
  log.on_task(task_event(TaskEvent::Kind::submitted, 1, TaskState::pending));
  log.stop();
  log.on_task(task_event(TaskEvent::Kind::submitted, 2, TaskState::pending));
  log.flush();  // returns at once: nothing more will be written
  EXPECT_EQ(lines().size(), 1u);
}

TEST_F(LogObserverTest, UnopenableFileThrows) {
  EXPECT_THROW(LogObserver({.path = (dir_ / "missing" / "pervade.log").string()}), std::system_error);
}

}  // namespace
}  // namespace pervade
