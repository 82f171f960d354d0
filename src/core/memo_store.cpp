#include "core/memo_store.hpp"

#include <fmt/format.h>
#include <sqlite3.h>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "pervade/errors.hpp"
#include "util/hex.hpp"
#include "util/private_files.hpp"

namespace pervade::detail {

namespace {

constexpr int kApplicationId = 0x70766d6f;  // "pvmo": tells our checkpoints from other SQLite files
// 2: a closed checkpoint is in rollback-journal mode, so a file still in WAL mode whose -wal
// file is missing has lost results. Format 1 files stayed in WAL mode when closed.
constexpr int kFormatVersion = 2;
constexpr int kOldestFormat = 1;

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

// Byte 18 of a SQLite file's header is 2 while the database is in WAL mode.
bool header_says_wal(const std::string& path) {
  unsigned char header[20] = {};
  std::FILE* f = std::fopen(path.c_str(), "rbe");
  const bool read = f && std::fread(header, 1, sizeof header, f) == sizeof header;
  if (f) std::fclose(f);
  return read && header[18] == 2;
}

std::uint32_t big_endian_32(const unsigned char* p) {
  return std::uint32_t{p[0]} << 24 | std::uint32_t{p[1]} << 16 | std::uint32_t{p[2]} << 8 | p[3];
}

std::uint32_t little_endian_32(const unsigned char* p) {
  return std::uint32_t{p[3]} << 24 | std::uint32_t{p[2]} << 16 | std::uint32_t{p[1]} << 8 | p[0];
}

// SQLite's WAL checksum (its file format documentation, "Checksum Algorithm"): pairs of 32-bit
// words, in the byte order the log's magic number names, summed into (s0, s1).
void wal_checksum(bool big_endian, const unsigned char* p, std::size_t n, std::uint32_t& s0, std::uint32_t& s1) {
  for (std::size_t i = 0; i + 8 <= n; i += 8) {
    const std::uint32_t x0 = big_endian ? big_endian_32(p + i) : little_endian_32(p + i);
    const std::uint32_t x1 = big_endian ? big_endian_32(p + i + 4) : little_endian_32(p + i + 4);
    s0 += x0 + s1;
    s1 += x1 + s0;
  }
}

// Why a write-ahead log cannot be trusted, or "" when it can. SQLite reads a WAL up to its
// first frame with a wrong checksum and silently ignores the rest, which would drop committed
// results without a word. A transaction cut short by a kill only ever ends the log; a bad frame
// followed by frames of the same log generation (the same salts) is damage.
std::string wal_damage(const std::string& wal) {
  std::FILE* f = std::fopen(wal.c_str(), "rbe");
  if (!f) return std::string("cannot be read: ") + std::strerror(errno);
  struct Close {
    std::FILE* f;
    ~Close() { std::fclose(f); }
  } closer{f};
  unsigned char header[32];
  const std::size_t got = std::fread(header, 1, sizeof header, f);
  if (got == 0) return "";  // emptied by a checkpoint: nothing to replay
  if (got < sizeof header) return "its header is cut short";
  const std::uint32_t magic = big_endian_32(header);
  const std::uint32_t page_size = big_endian_32(header + 8);
  if ((magic & ~1U) != 0x377f0682U || page_size < 512 || page_size > 65536 || (page_size & (page_size - 1)))
    return "its header is damaged (not a SQLite write-ahead log)";
  const bool big_endian = magic & 1U;
  std::uint32_t s0 = 0, s1 = 0;
  wal_checksum(big_endian, header, 24, s0, s1);
  if (s0 != big_endian_32(header + 24) || s1 != big_endian_32(header + 28)) return "its header fails its checksum";
  std::vector<unsigned char> frame(24 + page_size);
  bool chain_intact = true;
  for (std::size_t index = 1;; ++index) {
    if (std::fread(frame.data(), 1, frame.size(), f) != frame.size()) return "";
    const bool this_generation = std::memcmp(frame.data() + 8, header + 16, 8) == 0;
    if (!chain_intact) {
      if (this_generation)
        return fmt::format("a frame before frame {} fails its checksum and the committed transactions after it "
                           "would be lost",
                           index);
      continue;
    }
    std::uint32_t t0 = s0, t1 = s1;
    wal_checksum(big_endian, frame.data(), 8, t0, t1);
    wal_checksum(big_endian, frame.data() + 24, page_size, t0, t1);
    if (this_generation && t0 == big_endian_32(frame.data() + 16) && t1 == big_endian_32(frame.data() + 20)) {
      s0 = t0;
      s1 = t1;
    } else {
      chain_intact = false;  // the end of the log, unless frames of this generation follow
    }
  }
}

// A path as the file part of a SQLite URI.
std::string uri_path(const std::string& path) {
  std::string out;
  for (char c : path) {
    if (c == '%' || c == '?' || c == '#')
      out += fmt::format("%{:02X}", static_cast<unsigned char>(c));
    else
      out += c;
  }
  return out;
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

MemoStore::~MemoStore() { close(); }

void MemoStore::close() {
  if (!db_) return;
  sqlite3_finalize(insert_);
  insert_ = nullptr;
  // Back to rollback-journal mode: SQLite folds the WAL into tasks.db and removes it, and the
  // header says so (a reader then knows that no -wal file belongs to it).
  char* err = nullptr;
  if (sqlite3_exec(db_, "PRAGMA journal_mode=DELETE", nullptr, nullptr, &err) != SQLITE_OK) {
    std::fprintf(stderr, "pervade: closing the checkpoint %s: %s (keep its -wal file with it)\n",
                 file_in(config_.dir).c_str(), err ? err : sqlite3_errmsg(db_));
    sqlite3_free(err);
  }
  sqlite3_close(db_);
  db_ = nullptr;
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
  // Read-only, so loading never changes a checkpoint and works on read-only storage. A file
  // with a -wal file beside it (its run was killed, or still runs) is read with its log, which
  // SQLite replays up to the last complete transaction; any other is opened as immutable
  // (nothing written, not even lock files).
  const std::string wal = path + "-wal";
  const bool has_wal = std::filesystem::exists(wal, ec);
  if (has_wal) {
    if (std::string why = wal_damage(wal); !why.empty()) throw fail(fmt::format("its write-ahead log {} {}", wal, why));
  }
  const std::string uri = "file:" + uri_path(path) + (has_wal ? "?mode=ro" : "?mode=ro&immutable=1");
  if (sqlite3_open_v2(uri.c_str(), &d.db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, nullptr) != SQLITE_OK)
    throw fail(fmt::format("{}{}", d.db ? sqlite3_errmsg(d.db) : "cannot open",
                           has_wal ? " (reading its write-ahead log on read-only storage also needs its -shm file: "
                                     "copy the checkpoint directory to writable storage)"
                                   : ""));
  try {
    if (pragma_int(d.db, "PRAGMA application_id") != kApplicationId)
      throw fail("not a pervade checkpoint (wrong SQLite application_id)");
    const int v = pragma_int(d.db, "PRAGMA user_version");
    if (v < kOldestFormat || v > kFormatVersion)
      throw fail(fmt::format("checkpoint format {} is not supported (this pervade reads formats {} to {})", v,
                             kOldestFormat, kFormatVersion));
    if (v >= 2 && !has_wal && header_says_wal(path))
      throw fail(fmt::format("its write-ahead log {} is missing: the run that wrote it did not close it (it was "
                             "killed or still runs), and the results it committed since its last SQLite checkpoint "
                             "are in that file; copy tasks.db together with tasks.db-wal",
                             wal));
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
  if (!create_private_directories(config_.dir, ec))
    throw ConfigurationError(
        fmt::format("cannot create the checkpoint directory {}: {}", config_.dir, ec.message()));
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
    // operating system, so a killed process loses nothing committed (a power cut may). The
    // WAL mode is recorded in tasks.db's header until close() turns it back.
    exec(db_, "PRAGMA journal_mode=WAL");
    exec(db_, "PRAGMA synchronous=OFF");
    // The first read makes the -wal file: from now on a file in WAL mode without one has lost it.
    pragma_int(db_, "PRAGMA user_version");
  } catch (const Error& e) {
    throw ConfigurationError(fmt::format("cannot open the checkpoint {}: {}", path, e.what()));
  }
  if (sqlite3_prepare_v2(db_, "INSERT INTO memo (key, value, checksum) VALUES (?, ?, ?)", -1, &insert_, nullptr) !=
      SQLITE_OK)
    throw ConfigurationError(fmt::format("cannot open the checkpoint {}: {}", path, sqlite3_errmsg(db_)));
}

void MemoStore::create_file(const std::string& path) {
  // Made empty with mode 0600 first: SQLite keeps an existing file's mode, and gives it to the
  // -wal and -shm files too. Results are pickles: unpickling another user's runs code.
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) throw ConfigurationError(fmt::format("cannot create the checkpoint {}: {}", path, std::strerror(errno)));
  ::close(fd);
  Db d;
  if (sqlite3_open_v2(path.c_str(), &d.db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK)
    throw ConfigurationError(fmt::format("cannot create the checkpoint {}: {}", path, d.db ? sqlite3_errmsg(d.db) : "?"));
  try {
    exec(d.db, fmt::format("PRAGMA application_id={}", kApplicationId).c_str());
    exec(d.db, fmt::format("PRAGMA user_version={}", kFormatVersion).c_str());
    // A rowid table without an index on key: appends stay cheap; a reader keeps the last record.
    exec(d.db, "CREATE TABLE memo (key BLOB NOT NULL, value BLOB NOT NULL, checksum INTEGER NOT NULL)");
  } catch (const Error& e) {
    throw ConfigurationError(fmt::format("cannot create the checkpoint {}: {}", path, e.what()));
  }
}

const std::string* MemoStore::find(const MemoKey& key) const {
  auto it = table_.find(key);
  return it == table_.end() ? nullptr : &it->second;
}

void MemoStore::record(const MemoKey& key, std::string bytes) {
  table_.insert_or_assign(key, std::move(bytes));
  if (db_ && !broken_) {
    unwritten_.push_back(key);
    in_this_run_.insert(key);
  }
  failures_.erase(key);
}

void MemoStore::record_recalled(const MemoKey& key) {
  if (db_ && !broken_ && in_this_run_.insert(key).second) unwritten_.push_back(key);
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
    if (config_.parsl_pickle_copy) append_parsl_pickles();
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

std::string MemoStore::parsl_pickle_record(const MemoKey& key, const std::string& value) {
  // Pickle protocol 3 opcodes, written out: the record refers to the value's pickle instead of
  // holding the object, so the engine needs no Python to write it.
  std::string out("\x80\x03}(", 4);  // PROTO 3, EMPTY_DICT, MARK
  const auto put_length = [&out](std::uint64_t n, int bytes) {
    for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  };
  const auto text = [&](std::string_view s) {  // BINUNICODE
    out.push_back('X');
    put_length(s.size(), 4);
    out.append(s);
  };
  text("hash");
  text(to_hex({reinterpret_cast<const char*>(key.data()), key.size()}));
  text("exception");
  out.push_back('N');  // NONE: only results are checkpointed, as in Parsl
  text("result");
  out.append("cpickle\nloads\n");  // GLOBAL pickle.loads
  if (value.size() < (std::uint64_t{1} << 32)) {
    out.push_back('B');  // BINBYTES
    put_length(value.size(), 4);
  } else {
    out[1] = '\x04';  // BINBYTES8 needs protocol 4
    out.push_back('\x8e');
    put_length(value.size(), 8);
  }
  out.append(value);
  out.append("\x85Ru.", 4);  // TUPLE1, REDUCE, SETITEMS, STOP
  return out;
}

// After the records are committed to tasks.db. One write() per pass (O_APPEND), so a reader sees
// whole passes; a failure is said once and ends the copy, never the checkpoint.
void MemoStore::append_parsl_pickles() {
  if (pickle_copy_broken_) return;
  std::string records;
  for (const MemoKey& key : unwritten_) records += parsl_pickle_record(key, table_.at(key));
  const std::string path = (std::filesystem::path(config_.dir) / "tasks.pkl").string();
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  std::string_view rest(records);
  while (fd >= 0 && !rest.empty()) {
    const ssize_t n = ::write(fd, rest.data(), rest.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    rest.remove_prefix(static_cast<std::size_t>(n));
  }
  const int error = fd < 0 || !rest.empty() ? errno : 0;
  if (fd >= 0) ::close(fd);
  if (error != 0 || !rest.empty()) {
    pickle_copy_broken_ = true;
    std::fprintf(stderr, "pervade: writing Parsl's checkpoint copy %s failed, the copy stops (tasks.db is complete): %s\n",
                 path.c_str(), std::strerror(error ? error : EIO));
  }
}

void MemoStore::schedule_next(std::chrono::steady_clock::time_point now) {
  if (config_.mode == CheckpointMode::periodic && config_.period.count() > 0)
    next_write_ = now + std::chrono::duration_cast<std::chrono::steady_clock::duration>(config_.period);
}

}  // namespace pervade::detail
