// The memo table and its checkpoint file (real SQLite files in a temporary directory), and the
// kernel's use of them driven synchronously with a fake executor: hits, misses, restart from a
// file, task_exit group commit, damaged files.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iterator>

#include <sys/wait.h>
#include <unistd.h>

#include "core/kernel_core.hpp"
#include "fake_executor.hpp"
#include "core/memo_store.hpp"
#include "pervade/dataflow_kernel.hpp"
#include "pervade/errors.hpp"
#include "pervade/remote.hpp"

using namespace pervade;
namespace fs = std::filesystem;

namespace {

detail::MemoKey key_of(int i) {
  std::string k(kMemoKeySize, '\0');
  std::snprintf(k.data(), k.size(), "key-%d", i);
  return detail::to_memo_key(k);
}

std::string key_bytes(int i) {
  auto k = key_of(i);
  return std::string(reinterpret_cast<const char*>(k.data()), k.size());
}

class MemoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("pervade_memo_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  CheckpointConfig config(const std::string& run, CheckpointMode mode = CheckpointMode::task_exit,
                          std::vector<std::string> files = {}) {
    CheckpointConfig c;
    c.memoize = true;
    c.mode = mode;
    c.dir = (dir_ / run / "checkpoint").string();
    c.files = std::move(files);
    return c;
  }
  std::string checkpoint_dir(const std::string& run) { return (dir_ / run / "checkpoint").string(); }
  std::string db(const std::string& run) { return detail::MemoStore::file_in(checkpoint_dir(run)); }

  // Writes n records in run "000" and closes the store.
  void write_records(int n) {
    detail::MemoStore store(config("000"));
    for (int i = 0; i < n; ++i) store.record(key_of(i), "value-" + std::to_string(i));
    EXPECT_EQ(store.write(), static_cast<std::size_t>(n));
  }

  fs::path dir_;
};

TEST(CheckpointMode, ParsesParslNamesAndRejectsOthers) {
  EXPECT_EQ(parse_checkpoint_mode(""), CheckpointMode::none);
  EXPECT_EQ(parse_checkpoint_mode("task_exit"), CheckpointMode::task_exit);
  EXPECT_EQ(parse_checkpoint_mode("periodic"), CheckpointMode::periodic);
  EXPECT_EQ(parse_checkpoint_mode("dfk_exit"), CheckpointMode::dfk_exit);
  EXPECT_EQ(parse_checkpoint_mode("manual"), CheckpointMode::manual);
  try {
    parse_checkpoint_mode("Manual");
    FAIL() << "a wrong name must throw";
  } catch (const ConfigurationError& e) {
    EXPECT_NE(std::string(e.what()).find("'Manual'"), std::string::npos) << e.what();
  }
}

TEST_F(MemoTest, HitsAndMissesInMemory) {
  CheckpointConfig c;
  c.memoize = true;
  detail::MemoStore store(c);
  EXPECT_EQ(store.find(key_of(1)), nullptr);
  store.record(key_of(1), "one");
  ASSERT_NE(store.find(key_of(1)), nullptr);
  EXPECT_EQ(*store.find(key_of(1)), "one");
  EXPECT_EQ(store.find(key_of(2)), nullptr);
  EXPECT_EQ(store.write(), 0u);  // no checkpoint mode: nothing is written anywhere
}

TEST_F(MemoTest, ParslPickleCopyAppendsOneRecordPerResultAfterTheCommit) {
  const fs::path pkl = fs::path(checkpoint_dir("000")) / "tasks.pkl";
  {
    detail::MemoStore plain(config("000"));
    plain.record(key_of(9), "nine");
    EXPECT_EQ(plain.write(), 1u);
  }
  EXPECT_FALSE(fs::exists(pkl)) << "the copy is off unless the front end asks for it";
  CheckpointConfig c = config("000");
  c.parsl_pickle_copy = true;
  detail::MemoStore store(c);
  EXPECT_FALSE(fs::exists(pkl)) << "nothing checkpointed yet: no file (Parsl's tests check this)";
  store.record(key_of(1), "one");
  store.record(key_of(2), "two");
  EXPECT_EQ(store.write(), 2u);
  store.record(key_of(3), "three");
  EXPECT_EQ(store.write(), 1u);
  std::ifstream in(pkl, std::ios::binary);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text, detail::MemoStore::parsl_pickle_record(key_of(1), "one") +
                      detail::MemoStore::parsl_pickle_record(key_of(2), "two") +
                      detail::MemoStore::parsl_pickle_record(key_of(3), "three"));
  EXPECT_EQ(fs::status(pkl).permissions() & fs::perms::all, fs::perms::owner_read | fs::perms::owner_write);
}

TEST(ParslPickleRecord, IsADictOfHashNoExceptionAndTheLoadedValue) {
  const std::string r = detail::MemoStore::parsl_pickle_record(key_of(1), "VALUE");
  EXPECT_EQ(r.substr(0, 4), std::string("\x80\x03}(", 4));                 // PROTO 3, EMPTY_DICT, MARK
  EXPECT_EQ(r.substr(r.size() - 4), std::string("\x85Ru.", 4));           // TUPLE1, REDUCE, SETITEMS, STOP
  EXPECT_NE(r.find("6b65792d31"), std::string::npos);                      // hex of "key-1"
  EXPECT_NE(r.find("cpickle\nloads\nB\x05\x00\x00\x00VALUE"), std::string::npos);  // pickle.loads(b"VALUE")
}

TEST_F(MemoTest, RestartLoadsEveryRecordAndTheLastOfAKeyWins) {
  {
    detail::MemoStore store(config("000"));
    store.record(key_of(1), "first");
    store.record(key_of(2), "two");
    EXPECT_EQ(store.write(), 2u);
    store.record(key_of(1), "second");
    EXPECT_EQ(store.write(), 1u);
  }
  detail::MemoStore again(config("001", CheckpointMode::none, {checkpoint_dir("000")}));
  EXPECT_EQ(again.size(), 2u);
  EXPECT_EQ(*again.find(key_of(1)), "second");
  EXPECT_EQ(*again.find(key_of(2)), "two");
  EXPECT_EQ(again.find(key_of(3)), nullptr);
  // The file itself may be named instead of its directory.
  detail::MemoStore by_file(config("002", CheckpointMode::none, {db("000")}));
  EXPECT_EQ(by_file.size(), 2u);
}

TEST_F(MemoTest, UnwrittenRecordsAreNotInTheFile) {
  {
    detail::MemoStore store(config("000", CheckpointMode::manual));
    store.record(key_of(1), "one");
    store.write();
    store.record(key_of(2), "two");  // never written: the process "dies" here
  }
  detail::MemoStore again(config("001", CheckpointMode::none, {checkpoint_dir("000")}));
  EXPECT_NE(again.find(key_of(1)), nullptr);
  EXPECT_EQ(again.find(key_of(2)), nullptr);
}

TEST_F(MemoTest, MissingFileIsBadCheckpointNamingIt) {
  const std::string missing = (dir_ / "nowhere" / "tasks.db").string();
  try {
    detail::MemoStore store(config("001", CheckpointMode::none, {missing}));
    FAIL() << "no error";
  } catch (const BadCheckpoint& e) {
    EXPECT_NE(std::string(e.what()).find(missing), std::string::npos) << e.what();
  }
}

TEST_F(MemoTest, CheckpointDirectoryWithoutItsFileIsEmpty) {
  // A run killed between making its checkpoint directory and putting tasks.db in place.
  fs::create_directories(checkpoint_dir("000"));
  detail::MemoStore store(config("001", CheckpointMode::none, {checkpoint_dir("000")}));
  EXPECT_EQ(store.size(), 0u);
  // But a Parsl pickle checkpoint is refused, naming the directory.
  std::ofstream(fs::path(checkpoint_dir("000")) / "tasks.pkl") << "x";
  EXPECT_THROW(detail::MemoStore(config("002", CheckpointMode::none, {checkpoint_dir("000")})), BadCheckpoint);
}

TEST_F(MemoTest, ANewCheckpointIsAValidEmptyOne) {
  { detail::MemoStore store(config("000")); }
  EXPECT_TRUE(fs::exists(db("000")));
  EXPECT_FALSE(fs::exists(db("000") + ".new"));
  detail::MemoStore reader(config("001", CheckpointMode::none, {checkpoint_dir("000")}));
  EXPECT_EQ(reader.size(), 0u);
}

TEST_F(MemoTest, GarbageFileIsBadCheckpointNamingIt) {
  const std::string path = (dir_ / "garbage.db").string();
  std::ofstream(path) << std::string(5000, 'x');
  try {
    detail::MemoStore store(config("001", CheckpointMode::none, {path}));
    FAIL() << "no error";
  } catch (const BadCheckpoint& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

TEST_F(MemoTest, TruncatedFileIsBadCheckpointNamingIt) {
  write_records(5000);
  {
    // Fold the WAL into the database file, so that truncating the file cuts records off.
    sqlite3* raw = nullptr;
    ASSERT_EQ(sqlite3_open(db("000").c_str(), &raw), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(raw, "PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode=DELETE", nullptr, nullptr, nullptr),
              SQLITE_OK);
    sqlite3_close(raw);
  }
  const auto size = fs::file_size(db("000"));
  ASSERT_GT(size, 8192u);
  fs::resize_file(db("000"), size / 2);
  try {
    detail::MemoStore store(config("001", CheckpointMode::none, {checkpoint_dir("000")}));
    FAIL() << "no error";
  } catch (const BadCheckpoint& e) {
    EXPECT_NE(std::string(e.what()).find(db("000")), std::string::npos) << e.what();
  }
}

TEST_F(MemoTest, CorruptRecordIsBadCheckpointNamingFileAndRecord) {
  write_records(10);
  {
    sqlite3* raw = nullptr;
    ASSERT_EQ(sqlite3_open(db("000").c_str(), &raw), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(raw, "UPDATE memo SET value = X'00' WHERE rowid = 4", nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(raw);
  }
  try {
    detail::MemoStore store(config("001", CheckpointMode::none, {checkpoint_dir("000")}));
    FAIL() << "no error";
  } catch (const BadCheckpoint& e) {
    EXPECT_NE(std::string(e.what()).find(db("000")), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("record 4"), std::string::npos) << e.what();
  }
}

TEST_F(MemoTest, ForeignSqliteFileIsRejected) {
  const std::string path = (dir_ / "other.db").string();
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &raw), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(raw, "CREATE TABLE t(x)", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(raw);
  EXPECT_THROW(detail::MemoStore(config("001", CheckpointMode::none, {path})), BadCheckpoint);
}

// ---- what a closed, a killed and a damaged checkpoint look like on disk

namespace {

std::string file_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// A run killed after `batches` transactions of 100 records each (records 0 .. 100*batches-1):
// the child process leaves without closing its store, as a SIGKILL would.
void write_and_die(const CheckpointConfig& config, int batches) {
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    detail::MemoStore store(config);
    for (int b = 0; b < batches; ++b) {
      for (int i = b * 100; i < (b + 1) * 100; ++i) store.record(key_of(i), std::string(200, 'a' + i % 26));
      store.write();
    }
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

}  // namespace

TEST_F(MemoTest, AClosedCheckpointIsOneSelfContainedPrivateFile) {
  write_records(500);
  EXPECT_FALSE(fs::exists(db("000") + "-wal"));
  EXPECT_EQ(fs::status(db("000")).permissions(), fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_EQ(fs::status(checkpoint_dir("000")).permissions(), fs::perms::owner_all);
  // A copy of tasks.db alone holds every result.
  const fs::path copy = dir_ / "copy" / "tasks.db";
  fs::create_directories(copy.parent_path());
  fs::copy_file(db("000"), copy);
  detail::MemoStore reader(config("001", CheckpointMode::none, {copy.string()}));
  EXPECT_EQ(reader.size(), 500u);
  // Loading wrote nothing next to it (immutable: no -wal, -shm or journal).
  EXPECT_EQ(std::distance(fs::directory_iterator(copy.parent_path()), fs::directory_iterator()), 1);
}

TEST_F(MemoTest, AKilledRunsCheckpointLoadsWithItsWalAndLoadingChangesNothing) {
  write_and_die(config("000"), 3);
  ASSERT_TRUE(fs::exists(db("000") + "-wal"));
  const std::string before_db = file_bytes(db("000")), before_wal = file_bytes(db("000") + "-wal");
  detail::MemoStore reader(config("001", CheckpointMode::none, {checkpoint_dir("000")}));
  EXPECT_EQ(reader.size(), 300u);
  EXPECT_EQ(file_bytes(db("000")), before_db);
  EXPECT_EQ(file_bytes(db("000") + "-wal"), before_wal);
}

TEST_F(MemoTest, AKilledRunsCheckpointWithoutItsWalIsBadCheckpoint) {
  write_and_die(config("000"), 3);
  const fs::path copy = dir_ / "copy" / "tasks.db";  // tasks.db copied without tasks.db-wal
  fs::create_directories(copy.parent_path());
  fs::copy_file(db("000"), copy);
  try {
    detail::MemoStore store(config("001", CheckpointMode::none, {copy.string()}));
    FAIL() << "no error: the results in the missing WAL were lost silently";
  } catch (const BadCheckpoint& e) {
    EXPECT_NE(std::string(e.what()).find(copy.string()), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("write-ahead log"), std::string::npos) << e.what();
  }
}

TEST_F(MemoTest, ADamagedWalIsBadCheckpointNamingIt) {
  write_and_die(config("000"), 3);
  const std::string wal = db("000") + "-wal";
  const auto size = fs::file_size(wal);
  ASSERT_GT(size, 3 * 4096u);
  {
    // One byte of an early frame's page changed: SQLite alone would stop reading there and
    // drop every later transaction without a word.
    std::fstream f(wal, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(32 + 24 + 100);
    f.put('\x5a' ^ file_bytes(wal)[32 + 24 + 100]);
  }
  try {
    detail::MemoStore store(config("001", CheckpointMode::none, {checkpoint_dir("000")}));
    FAIL() << "no error";
  } catch (const BadCheckpoint& e) {
    EXPECT_NE(std::string(e.what()).find(wal), std::string::npos) << e.what();
  }
}

// ---- the kernel with a memo store

class NoopBody : public TaskBody {
 public:
  Outcome run(TaskContext&) override { return Outcome::success({}); }
  void request_memo_key(const TaskContext&, MemoKeyReply reply) override { replies.push_back(std::move(reply)); }
  void request_serialized(const std::any&, SerializeReply reply) override { serializing.push_back(std::move(reply)); }
  std::vector<MemoKeyReply> replies;
  std::vector<SerializeReply> serializing;
};

using fakes::FakeExecutor;

class MemoKernelTest : public MemoTest {
 protected:
  // Counts of the checkpoint passes the kernel tells its observers of.
  struct PassRecorder : Observer {
    void on_workflow(const WorkflowEvent& e) override {
      if (e.kind == WorkflowEvent::Kind::checkpointed) passes.push_back(e.checkpointed);
    }
    std::vector<std::size_t> passes;
  };
  void make(CheckpointConfig c) {
    store = std::make_unique<detail::MemoStore>(c);
    detail::KernelOptions o;
    o.memo = store.get();
    o.observers = std::make_shared<const Observers>(std::vector<ObserverPtr>{recorder});
    o.post_memo_key = [this](const TaskRecordPtr& t, std::string key, std::exception_ptr e) {
      posted.push_back({t, std::move(key), std::move(e)});
    };
    o.post_serialized = [this](const TaskRecordPtr& t, std::string bytes) {
      serialized.emplace_back(t, std::move(bytes));
    };
    core = std::make_unique<detail::KernelCore>(o, std::vector<ExecutorPtr>{ex});
  }
  TaskRecordPtr submit(std::string key, std::vector<TaskRecordPtr> deps = {}, bool later = false) {
    TaskSpec spec;
    spec.body = body;
    spec.func_name = "f";
    spec.memo_key = std::move(key);
    spec.memo_key_later = later;
    spec.dependencies = std::move(deps);
    auto t = std::make_shared<TaskRecord>(TaskId{next_id++}, std::move(spec));
    core->submit(t);
    core->flush();
    return t;
  }
  void complete_next(Outcome out) {
    Launch l = std::move(ex->launched.front());
    ex->launched.pop_front();
    core->complete(Completion{l.task, l.try_id, std::move(out)});
  }
  static Outcome value_with_bytes(std::string bytes) {
    Outcome o = Outcome::success(42);
    o.serialized = std::move(bytes);
    return o;
  }

  struct Posted {
    TaskRecordPtr task;
    std::string key;
    std::exception_ptr error;
  };
  std::shared_ptr<FakeExecutor> ex = std::make_shared<FakeExecutor>("a");
  std::shared_ptr<NoopBody> body = std::make_shared<NoopBody>();
  std::unique_ptr<detail::MemoStore> store;
  std::shared_ptr<PassRecorder> recorder = std::make_shared<PassRecorder>();
  std::unique_ptr<detail::KernelCore> core;
  std::vector<Posted> posted;
  std::vector<std::pair<TaskRecordPtr, std::string>> serialized;
  std::uint64_t next_id = 0;
};

TEST_F(MemoKernelTest, AMemoizedJoinIsRecordedBeforeItFinishesAndRecalledLater) {
  make(config("000", CheckpointMode::none));
  auto join = submit(key_bytes(7));
  auto inner = submit("");
  complete_next(Outcome::join_tasks({inner}, false));
  complete_next(Outcome::success(42));  // a value of this process: no bytes yet
  core->flush();
  EXPECT_EQ(join->state(), TaskState::joining);  // waits for its bytes
  ASSERT_EQ(body->serializing.size(), 1u);
  body->serializing[0]("forty-two");
  ASSERT_EQ(serialized.size(), 1u);
  core->memo_value_ready(serialized[0].first, serialized[0].second);
  EXPECT_EQ(join->state(), TaskState::exec_done);
  EXPECT_EQ(std::any_cast<int>(join->value()), 42);
  auto again = submit(key_bytes(7));
  EXPECT_TRUE(ex->launched.empty());
  EXPECT_EQ(again->state(), TaskState::memo_done);
  EXPECT_EQ(std::any_cast<RemoteBytes>(again->value()).bytes, "forty-two");
}

TEST_F(MemoKernelTest, AMemoizedJoinOfPoolBytesIsRecordedAtOnceAndUnpicklableValuesAreNot) {
  make(config("000", CheckpointMode::none));
  auto join = submit(key_bytes(8));
  auto inner = submit("");
  complete_next(Outcome::join_tasks({inner}, false));
  complete_next(Outcome::success(RemoteBytes{"from-a-pool"}));
  core->flush();
  EXPECT_EQ(join->state(), TaskState::exec_done);
  EXPECT_TRUE(body->serializing.empty());
  ASSERT_NE(store->find(key_of(8)), nullptr);
  EXPECT_EQ(*store->find(key_of(8)), "from-a-pool");
  // A value that cannot be serialized (empty bytes): the join succeeds, nothing is recorded.
  auto other = submit(key_bytes(9));
  auto inner2 = submit("");
  complete_next(Outcome::join_tasks({inner2}, false));
  complete_next(Outcome::success(1));
  core->flush();
  body->serializing.at(0)("");
  core->memo_value_ready(serialized.at(0).first, serialized.at(0).second);
  EXPECT_EQ(other->state(), TaskState::exec_done);
  EXPECT_EQ(store->find(key_of(9)), nullptr);
}

TEST_F(MemoKernelTest, TaskExitWritesBeforeTheTaskIsCompleted) {
  make(config("000"));
  auto t = submit(key_bytes(1));
  ASSERT_EQ(ex->launched.size(), 1u);
  complete_next(value_with_bytes("result-1"));
  // Final but not yet completed: its result is not in the file yet.
  EXPECT_EQ(t->state(), TaskState::exec_done);
  EXPECT_FALSE(t->wait_for(std::chrono::duration<double>(0)));
  core->flush();  // end of the reactor's batch: one transaction, then the completions
  EXPECT_TRUE(t->wait_for(std::chrono::duration<double>(0)));
  detail::MemoStore reader(config("001", CheckpointMode::none, {checkpoint_dir("000")}));
  ASSERT_NE(reader.find(key_of(1)), nullptr);
  EXPECT_EQ(*reader.find(key_of(1)), "result-1");
}

TEST_F(MemoKernelTest, SameKeyLaterIsMemoDoneWithoutRunning) {
  make(config("000"));
  submit(key_bytes(1));
  complete_next(value_with_bytes("result-1"));
  core->flush();
  auto again = submit(key_bytes(1));
  EXPECT_TRUE(ex->launched.empty());
  EXPECT_EQ(again->state(), TaskState::memo_done);
  EXPECT_EQ(std::any_cast<RemoteBytes>(again->value()).bytes, "result-1");
  auto other = submit(key_bytes(2));
  EXPECT_EQ(ex->launched.size(), 1u);
  EXPECT_EQ(other->state(), TaskState::launched);
}

TEST_F(MemoKernelTest, FailuresAreRecalledInMemoryAndNeverCheckpointed) {
  make(config("000", CheckpointMode::task_exit));
  submit(key_bytes(1));
  auto boom = std::make_exception_ptr(std::runtime_error("boom"));
  complete_next(Outcome::failure(boom));
  core->flush();
  submit(key_bytes(2));
  complete_next(Outcome::success(7));  // no bytes: not recorded
  core->flush();
  EXPECT_EQ(store->size(), 0u);
  auto again = submit(key_bytes(1));  // as Parsl: the same failure, without running
  EXPECT_TRUE(ex->launched.empty());
  EXPECT_EQ(again->state(), TaskState::failed);
  EXPECT_EQ(again->error(), boom);
  submit(key_bytes(2));
  EXPECT_EQ(ex->launched.size(), 1u);  // runs again
  core.reset();
  make(config("001", CheckpointMode::none, {checkpoint_dir("000")}));
  const auto launched = ex->launched.size();
  submit(key_bytes(1));
  EXPECT_EQ(ex->launched.size(), launched + 1);  // the failure was not in the checkpoint
}

TEST_F(MemoKernelTest, RestartAnswersFromTheCheckpoint) {
  make(config("000"));
  for (int i = 0; i < 3; ++i) submit(key_bytes(i));
  for (int i = 0; i < 3; ++i) complete_next(value_with_bytes("r" + std::to_string(i)));
  core->flush();
  core.reset();
  make(config("001", CheckpointMode::task_exit, {checkpoint_dir("000")}));
  for (int i = 0; i < 3; ++i) EXPECT_EQ(submit(key_bytes(i))->state(), TaskState::memo_done);
  EXPECT_TRUE(ex->launched.empty());
}

TEST_F(MemoKernelTest, RecalledResultsGoIntoThisRunsCheckpoint) {
  make(config("000"));
  submit(key_bytes(1));
  complete_next(value_with_bytes("r1"));
  core->flush();
  core.reset();
  make(config("001", CheckpointMode::task_exit, {checkpoint_dir("000")}));
  EXPECT_EQ(submit(key_bytes(1))->state(), TaskState::memo_done);
  EXPECT_EQ(submit(key_bytes(1))->state(), TaskState::memo_done);  // written once
  core->flush();
  core.reset();
  detail::MemoStore reader(config("002", CheckpointMode::none, {checkpoint_dir("001")}));
  ASSERT_NE(reader.find(key_of(1)), nullptr);  // the last run's checkpoint alone has it
  EXPECT_EQ(*reader.find(key_of(1)), "r1");
  EXPECT_EQ(reader.size(), 1u);
}

TEST_F(MemoKernelTest, KeyAskedOfTheBodyOnceDependenciesAreDone) {
  make(config("000", CheckpointMode::none));
  store->record(key_of(5), "five");
  auto dep = submit("");  // not memoized
  auto t = submit("", {dep}, /*later=*/true);
  EXPECT_TRUE(body->replies.empty());  // the dependency is not done
  complete_next(Outcome::success(1));
  core->flush();
  ASSERT_EQ(body->replies.size(), 1u);
  body->replies[0](key_bytes(5), nullptr);
  ASSERT_EQ(posted.size(), 1u);
  core->memo_key_ready(posted[0].task, posted[0].key, posted[0].error);
  EXPECT_EQ(t->state(), TaskState::memo_done);
  // A failing key computation fails the task.
  auto u = submit("", {}, true);
  body->replies[1]({}, std::make_exception_ptr(std::runtime_error("no key")));
  core->memo_key_ready(posted[1].task, posted[1].key, posted[1].error);
  EXPECT_EQ(u->state(), TaskState::failed);
}

TEST_F(MemoKernelTest, ManualModeWritesOnlyAtCheckpoint) {
  make(config("000", CheckpointMode::manual));
  submit(key_bytes(1));
  complete_next(value_with_bytes("one"));
  core->flush();
  {
    detail::MemoStore reader(config("001", CheckpointMode::none, {checkpoint_dir("000")}));
    EXPECT_EQ(reader.size(), 0u);
  }
  EXPECT_EQ(core->checkpoint(), 1u);
  EXPECT_EQ(core->checkpoint(), 0u);
  EXPECT_EQ(recorder->passes, (std::vector<std::size_t>{1, 0})) << "each pass is told, with its count";
  detail::MemoStore reader(config("002", CheckpointMode::none, {checkpoint_dir("000")}));
  EXPECT_EQ(reader.size(), 1u);
}

TEST_F(MemoKernelTest, PeriodicModeWritesWhenTheTimerFires) {
  auto c = config("000", CheckpointMode::periodic);
  c.period = std::chrono::duration<double>(60);
  make(c);
  ASSERT_TRUE(core->next_deadline().has_value());
  submit(key_bytes(1));
  complete_next(value_with_bytes("one"));
  core->flush();
  EXPECT_TRUE(store->has_unwritten());
  core->fire_timers(*core->next_deadline());
  EXPECT_FALSE(store->has_unwritten());
}

}  // namespace

namespace {

TEST_F(MemoKernelTest, CloseWhileAKeyIsComputedFailsTheTaskAndIgnoresTheLateKey) {
  make(config("000", CheckpointMode::none));
  auto t = submit("", {}, /*later=*/true);
  ASSERT_EQ(body->replies.size(), 1u);
  core->close();
  EXPECT_EQ(t->state(), TaskState::failed);
  body->replies[0](key_bytes(1), nullptr);
  core->memo_key_ready(posted[0].task, posted[0].key, posted[0].error);  // ignored
  EXPECT_EQ(t->state(), TaskState::failed);
  EXPECT_TRUE(ex->launched.empty());
}

// The real kernel (reactor thread, thread-pool executor): a body that serializes its result.
class CountingBody : public TaskBody {
 public:
  explicit CountingBody(std::atomic<int>& runs) : runs_(runs) {}
  Outcome run(TaskContext&) override {
    ++runs_;
    Outcome o = Outcome::success(1);
    o.serialized = "bytes";
    return o;
  }

 private:
  std::atomic<int>& runs_;
};

TEST_F(MemoTest, DataFlowKernelAnswersFromItsCheckpointAfterARestart) {
  std::atomic<int> runs{0};
  auto submit = [&](DataFlowKernel& dfk, int key) {
    TaskSpec spec;
    spec.body = std::make_shared<CountingBody>(runs);
    spec.func_name = "counted";
    spec.memo_key = key_bytes(key);
    auto t = dfk.submit(std::move(spec));
    t->wait();
    return t;
  };
  {
    Config cfg;
    cfg.checkpoint = config("000", CheckpointMode::manual);
    DataFlowKernel dfk(std::move(cfg));
    EXPECT_EQ(submit(dfk, 1)->state(), TaskState::exec_done);
    EXPECT_EQ(submit(dfk, 1)->state(), TaskState::memo_done);
    EXPECT_EQ(dfk.checkpoint(), 1u);
    EXPECT_EQ(submit(dfk, 2)->state(), TaskState::exec_done);
  }  // cleanup() writes the rest
  EXPECT_EQ(runs.load(), 2);
  Config cfg;
  cfg.checkpoint = config("001", CheckpointMode::none, {checkpoint_dir("000")});
  DataFlowKernel dfk(std::move(cfg));
  EXPECT_EQ(submit(dfk, 1)->state(), TaskState::memo_done);
  EXPECT_EQ(submit(dfk, 2)->state(), TaskState::memo_done);
  EXPECT_EQ(runs.load(), 2);
}

TEST_F(MemoTest, DataFlowKernelStartFailsOnABadCheckpoint) {
  Config cfg;
  cfg.checkpoint = config("001", CheckpointMode::none, {(dir_ / "missing.db").string()});
  EXPECT_THROW(DataFlowKernel dfk(std::move(cfg)), BadCheckpoint);
}

}  // namespace
