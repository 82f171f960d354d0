#include "core/memo_store.hpp"

#include <fmt/format.h>
#include <sqlite3.h>

#include <cstdio>
#include <filesystem>

#include "pervade/errors.hpp"

namespace pervade::detail {

namespace {

constexpr int kApplicationId = 0x70766d6f;  // "pvmo": tells our checkpoints from other SQLite files
constexpr int kFormatVersion = 1;

// A checksum per record: SQLite checks its pages' structure, not the bytes inside a blob.
std::int64_t checksum(const unsigned char* key, const std::string& value) {
  std::uint64_t h = 1469598103934665603ULL;  // FNV-1a
  auto mix = [&h](const unsigned char* p, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ULL;
  };
  mix(key, kMemoKeySize);
  mix(reinterpret_cast<const unsigned char*>(value.data()), value.size());
  return static_cast<std::int64_t>(h);
}

// Closes the database on every path out of load().
struct Db {
  sqlite3* db = nullptr;
  sqlite3_stmt* stmt = nullptr;
  ~Db() {
    sqlite3_finalize(stmt);
    sqlite3_close(db);
  }
};

void exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errmsg(db);
    sqlite3_free(err);
    throw Error(fmt::format("{}: {}", sql, msg));
  }
}

int pragma_int(sqlite3* db, const char* sql) {
  sqlite3_stmt* stmt = nullptr;
  int value = 0;
  if (sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr) != SQLITE_OK) throw Error(sqlite3_errmsg(db));
  const int rc = sqlite3_step(stmt);
  if (rc == SQLITE_ROW) value = sqlite3_column_int(stmt, 0);
  sqlite3_finalize(stmt);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) throw Error(sqlite3_errmsg(db));
  return value;
}

}  // namespace

MemoKey to_memo_key(const std::string& bytes) {
  if (bytes.size() != kMemoKeySize)
    throw ConfigurationError(fmt::format("a memo key has {} bytes, got {}", kMemoKeySize, bytes.size()));
  MemoKey key;
  std::memcpy(key.data(), bytes.data(), kMemoKeySize);
  return key;
}

std::string MemoStore::file_in(const std::string& dir) { return (std::filesystem::path(dir) / "tasks.db").string(); }

MemoStore::MemoStore(const CheckpointConfig& config) : config_(config) {
  for (const auto& f : config_.files) load(f);
  if (config_.mode != CheckpointMode::none) {
    if (config_.dir.empty()) throw ConfigurationError("a checkpoint mode needs a checkpoint directory");
    open_for_writing();
  }
}

MemoStore::~MemoStore() {
  sqlite3_finalize(insert_);
  sqlite3_close(db_);
}

void MemoStore::load(const std::string& given) {
  std::string path = given;
  std::error_code ec;
  if (std::filesystem::is_directory(given, ec)) {
    path = file_in(given);
    if (!std::filesystem::exists(path, ec)) {
      if (std::filesystem::exists(std::filesystem::path(given) / "tasks.pkl", ec))
        throw BadCheckpoint(fmt::format("Failed to load checkpoint: {} holds a Parsl pickle checkpoint (tasks.pkl); "
                                        "pervade reads its own checkpoints (tasks.db)",
                                        given));
      return;  // a run that was killed before its checkpoint file was in place: nothing to load
    }
  }
  if (!std::filesystem::exists(path, ec)) throw BadCheckpoint("Checkpoint file was not found: " + path);
  Db d;
  auto fail = [&](const std::string& why) {
    return BadCheckpoint(fmt::format("Failed to load checkpoint: {}: {}", path, why));
  };
  // Read-write: a checkpoint left by a killed run has committed transactions in its WAL file,
  // which SQLite replays (up to the last complete one) when it opens the database.
  if (sqlite3_open_v2(path.c_str(), &d.db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK)
    throw fail(d.db ? sqlite3_errmsg(d.db) : "cannot open");
  try {
    if (pragma_int(d.db, "PRAGMA application_id") != kApplicationId)
      throw fail("not a pervade checkpoint (wrong SQLite application_id)");
    if (int v = pragma_int(d.db, "PRAGMA user_version"); v != kFormatVersion)
      throw fail(fmt::format("checkpoint format {} is not supported (this pervade reads format {})", v, kFormatVersion));
  } catch (const BadCheckpoint&) {
    throw;
  } catch (const Error& e) {
    throw fail(e.what());
  }
  if (sqlite3_prepare_v2(d.db, "SELECT key, value, checksum FROM memo ORDER BY rowid", -1, &d.stmt, nullptr) != SQLITE_OK)
    throw fail(sqlite3_errmsg(d.db));
  std::size_t record = 0;
  table_.reserve(table_.size() + 1024);
  for (;;) {
    const int rc = sqlite3_step(d.stmt);
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW) throw fail(fmt::format("{} (after {} records)", sqlite3_errmsg(d.db), record));
    ++record;
    const auto* key = static_cast<const unsigned char*>(sqlite3_column_blob(d.stmt, 0));
    const int key_size = sqlite3_column_bytes(d.stmt, 0);
    const auto* value = static_cast<const char*>(sqlite3_column_blob(d.stmt, 1));
    std::string bytes(value ? value : "", static_cast<std::size_t>(sqlite3_column_bytes(d.stmt, 1)));
    if (key_size != static_cast<int>(kMemoKeySize) || !key || checksum(key, bytes) != sqlite3_column_int64(d.stmt, 2))
      throw fail(fmt::format("record {} is corrupt (checksum mismatch)", record));
    MemoKey k;
    std::memcpy(k.data(), key, kMemoKeySize);
    table_.insert_or_assign(k, std::move(bytes));  // a later record of the same key wins
  }
}

void MemoStore::open_for_writing() {
  const std::string path = file_in(config_.dir);
  std::error_code ec;
  std::filesystem::create_directories(config_.dir, ec);
  if (ec) throw ConfigurationError(fmt::format("cannot create the checkpoint directory {}: {}", config_.dir, ec.message()));
  if (!std::filesystem::exists(path, ec)) {
    // Made complete under another name, then renamed: a run killed while creating it leaves no
    // half-made tasks.db that would stop the next run from loading its checkpoints.
    const std::string tmp = path + ".new";
    std::filesystem::remove(tmp, ec);
    create_file(tmp);
    std::filesystem::rename(tmp, path, ec);
    if (ec) throw ConfigurationError(fmt::format("cannot create the checkpoint {}: {}", path, ec.message()));
  }
  if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK)
    throw ConfigurationError(fmt::format("cannot open the checkpoint {}: {}", path, db_ ? sqlite3_errmsg(db_) : "?"));
  try {
    // WAL + synchronous=OFF: COMMIT is a write() to the WAL, no fsync. The data is then in the
    // operating system, so a killed process loses nothing committed (a power cut may).
    exec(db_, "PRAGMA journal_mode=WAL");
    exec(db_, "PRAGMA synchronous=OFF");
  } catch (const Error& e) {
    throw ConfigurationError(fmt::format("cannot open the checkpoint {}: {}", path, e.what()));
  }
  if (sqlite3_prepare_v2(db_, "INSERT INTO memo (key, value, checksum) VALUES (?, ?, ?)", -1, &insert_, nullptr) !=
      SQLITE_OK)
    throw ConfigurationError(fmt::format("cannot open the checkpoint {}: {}", path, sqlite3_errmsg(db_)));
}

void MemoStore::create_file(const std::string& path) {
  Db d;
  if (sqlite3_open_v2(path.c_str(), &d.db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) != SQLITE_OK)
    throw ConfigurationError(fmt::format("cannot create the checkpoint {}: {}", path, d.db ? sqlite3_errmsg(d.db) : "?"));
  try {
    exec(d.db, "PRAGMA journal_mode=WAL");  // persistent: stored in the file's header
    exec(d.db, fmt::format("PRAGMA application_id={}", kApplicationId).c_str());
    exec(d.db, fmt::format("PRAGMA user_version={}", kFormatVersion).c_str());
    // A rowid table without an index on key: appends stay cheap; a reader keeps the last record.
    exec(d.db, "CREATE TABLE memo (key BLOB NOT NULL, value BLOB NOT NULL, checksum INTEGER NOT NULL)");
  } catch (const Error& e) {
    throw ConfigurationError(fmt::format("cannot create the checkpoint {}: {}", path, e.what()));
  }
  // Closing the last connection folds the WAL into the file and removes it, before the rename.
}

const std::string* MemoStore::find(const MemoKey& key) const {
  auto it = table_.find(key);
  return it == table_.end() ? nullptr : &it->second;
}

void MemoStore::record(const MemoKey& key, std::string bytes) {
  table_.insert_or_assign(key, std::move(bytes));
  if (db_ && !broken_) unwritten_.push_back(key);
  failures_.erase(key);
}

const std::exception_ptr* MemoStore::find_failure(const MemoKey& key) const {
  auto it = failures_.find(key);
  return it == failures_.end() ? nullptr : &it->second;
}

void MemoStore::record_failure(const MemoKey& key, std::exception_ptr error) {
  failures_.insert_or_assign(key, std::move(error));
}

std::size_t MemoStore::write() {
  if (unwritten_.empty() || !db_ || broken_) {
    unwritten_.clear();
    return 0;
  }
  try {
    exec(db_, "BEGIN");
    for (const MemoKey& key : unwritten_) {
      const std::string& value = table_.at(key);
      sqlite3_bind_blob(insert_, 1, key.data(), static_cast<int>(key.size()), SQLITE_STATIC);
      sqlite3_bind_blob(insert_, 2, value.data(), static_cast<int>(value.size()), SQLITE_STATIC);
      sqlite3_bind_int64(insert_, 3, checksum(key.data(), value));
      const int rc = sqlite3_step(insert_);
      sqlite3_reset(insert_);
      if (rc != SQLITE_DONE) throw Error(sqlite3_errmsg(db_));
    }
    exec(db_, "COMMIT");
  } catch (const Error& e) {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    broken_ = true;
    std::fprintf(stderr, "pervade: writing the checkpoint %s failed, checkpointing stops: %s\n",
                 file_in(config_.dir).c_str(), e.what());
    unwritten_.clear();
    return 0;
  }
  const std::size_t n = unwritten_.size();
  unwritten_.clear();
  return n;
}

void MemoStore::schedule_next(std::chrono::steady_clock::time_point now) {
  if (config_.mode == CheckpointMode::periodic && config_.period.count() > 0)
    next_write_ = now + std::chrono::duration_cast<std::chrono::steady_clock::duration>(config_.period);
}

}  // namespace pervade::detail
