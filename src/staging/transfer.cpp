// Transfers for staging (include/pervade/staging.hpp): libcurl easy handles on the calling thread,
// SHA-256 while the bytes arrive, flock(2) for what the processes of a node share (the cache entry
// being fetched, the transfer slots).
#include "pervade/staging.hpp"

#include <curl/curl.h>
#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <openssl/evp.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <random>
#include <vector>

namespace pervade::staging {
namespace {

constexpr std::uint64_t kCopyChunk = 1ULL << 30;

std::string errno_text(const std::string& what) { return fmt::format("{}: {}", what, std::strerror(errno)); }

/// An open file descriptor, closed with its owner.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Fd& operator=(Fd&& o) noexcept {
    std::swap(fd_, o.fd_);
    return *this;
  }
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }

 private:
  int fd_;
};

/// An exclusive flock on a file (made if missing), released with its owner.
class FileLock {
 public:
  static std::unique_ptr<FileLock> take(const std::string& path, bool wait) {
    Fd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (!fd) return nullptr;
    while (::flock(fd.get(), LOCK_EX | (wait ? 0 : LOCK_NB)) != 0) {
      if (errno != EINTR) return nullptr;
    }
    return std::unique_ptr<FileLock>(new FileLock(std::move(fd)));
  }

 private:
  explicit FileLock(Fd fd) : fd_(std::move(fd)) {}
  Fd fd_;  // closing it releases the lock
};

class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new()) { EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr); }
  ~Sha256() { EVP_MD_CTX_free(ctx_); }
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(const void* data, std::size_t n) { EVP_DigestUpdate(ctx_, data, n); }
  void reset() { EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr); }
  std::string hex() {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_DigestFinal_ex(ctx_, digest, &n);
    std::string out;
    for (unsigned int i = 0; i < n; ++i) out += fmt::format("{:02x}", digest[i]);
    return out;
  }

 private:
  EVP_MD_CTX* ctx_;
};

std::string sha256_of(const std::string& text) {
  Sha256 h;
  h.update(text.data(), text.size());
  return h.hex();
}

/// Hashes what a file already holds (a partial transfer being resumed); false on a read error.
bool hash_file(int fd, Sha256& h, std::uint64_t& size) {
  std::vector<char> buf(1 << 20);
  size = 0;
  if (::lseek(fd, 0, SEEK_SET) < 0) return false;
  for (;;) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    if (n == 0) return true;
    h.update(buf.data(), static_cast<std::size_t>(n));
    size += static_cast<std::uint64_t>(n);
  }
}

bool write_all(int fd, const char* data, std::size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, data, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    data += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

std::string directory_of(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

std::string base_of(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

bool make_dirs(const std::string& dir, mode_t mode) {
  if (dir.empty() || dir == "." || dir == "/") return true;
  struct stat st{};
  if (::stat(dir.c_str(), &st) == 0) return S_ISDIR(st.st_mode);
  if (!make_dirs(directory_of(dir), mode)) return false;
  return ::mkdir(dir.c_str(), mode) == 0 || errno == EEXIST;
}

/// The process's umask (read once: umask(2) can only be read by setting it).
mode_t current_umask() {
  static const mode_t mask = [] {
    mode_t m = ::umask(0);
    ::umask(m);
    return m;
  }();
  return mask;
}

/// A file under a temporary name beside `path`, renamed to it by commit(), removed otherwise.
class PartFile {
 public:
  explicit PartFile(const std::string& path) : path_(path) {
    std::string dir = directory_of(path);
    if (!make_dirs(dir, 0777)) {
      error_ = errno_text(fmt::format("cannot make the directory {}", dir));
      return;
    }
    std::string tmpl = fmt::format("{}/.{}.XXXXXX.part", dir, base_of(path));
    std::vector<char> name(tmpl.begin(), tmpl.end());
    name.push_back('\0');
    fd_ = Fd(::mkostemps(name.data(), 5, O_CLOEXEC));
    if (!fd_) {
      error_ = errno_text(fmt::format("cannot write beside {}", path));
      return;
    }
    temp_ = name.data();
  }
  ~PartFile() {
    if (!temp_.empty()) ::unlink(temp_.c_str());
  }
  PartFile(const PartFile&) = delete;
  PartFile& operator=(const PartFile&) = delete;

  const std::string& error() const { return error_; }
  int fd() const { return fd_.get(); }
  bool commit() {
    if (::fchmod(fd_.get(), 0666 & ~current_umask()) != 0 || ::rename(temp_.c_str(), path_.c_str()) != 0) {
      error_ = errno_text(fmt::format("cannot rename into {}", path_));
      return false;
    }
    temp_.clear();
    return true;
  }

 private:
  std::string path_, temp_, error_;
  Fd fd_;
};

void init_curl() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

using Curl = std::unique_ptr<CURL, void (*)(CURL*)>;

/// One easy handle with the options every request shares.
Curl make_handle(const std::string& url, const FetchOptions& o, char* errbuf) {
  init_curl();
  Curl c(curl_easy_init(), curl_easy_cleanup);
  CURL* h = c.get();
  errbuf[0] = '\0';
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_FAILONERROR, 1L);
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(h, CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https,ftp");
  curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https,ftp");
  // No progress for `timeout` seconds fails the transfer (connecting, or receiving under 1 B/s).
  long ms = std::max(1L, static_cast<long>(std::ceil(o.timeout * 1000)));
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, ms);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, std::max(1L, static_cast<long>(std::ceil(o.timeout))));
  curl_easy_setopt(h, CURLOPT_BUFFERSIZE, 512L * 1024);
  if (const char* ca = std::getenv("SSL_CERT_FILE"); ca && *ca) curl_easy_setopt(h, CURLOPT_CAINFO, ca);
  if (const char* dir = std::getenv("SSL_CERT_DIR"); dir && *dir) curl_easy_setopt(h, CURLOPT_CAPATH, dir);
  return c;
}

/// The error of a failed request, in words a user can act on.
std::string describe(CURL* h, CURLcode code, const char* errbuf, double timeout) {
  long response = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &response);
  std::string detail = errbuf[0] ? errbuf : curl_easy_strerror(code);
  switch (code) {
    case CURLE_HTTP_RETURNED_ERROR:
      return fmt::format("HTTP {}", response);
    case CURLE_OPERATION_TIMEDOUT:
      return fmt::format("timed out (no progress for {} s): {}", timeout, detail);
    case CURLE_REMOTE_FILE_NOT_FOUND:
    case CURLE_REMOTE_ACCESS_DENIED:
    case CURLE_FTP_COULDNT_RETR_FILE:
      return response ? fmt::format("FTP {}: {}", response, detail) : detail;
    default:
      return detail;
  }
}

/// The URL's validators, from one HEAD request (FTP: SIZE and MDTM).
struct Validators {
  std::string etag;
  long long modified = -1;
  long long size = -1;
  bool usable() const { return !etag.empty() || modified >= 0 || size >= 0; }
};

std::size_t on_header(char* data, std::size_t size, std::size_t n, void* user) {
  std::string line(data, size * n);
  auto* v = static_cast<Validators*>(user);
  if (line.size() > 5 && strncasecmp(line.c_str(), "etag:", 5) == 0) {
    auto begin = line.find_first_not_of(" \t", 5);
    auto end = line.find_last_not_of(" \t\r\n");
    if (begin != std::string::npos && end >= begin) v->etag = line.substr(begin, end - begin + 1);
  }
  return size * n;
}

bool head(const std::string& url, const FetchOptions& o, Validators& v) {
  char errbuf[CURL_ERROR_SIZE];
  Curl c = make_handle(url, o, errbuf);
  curl_easy_setopt(c.get(), CURLOPT_NOBODY, 1L);
  curl_easy_setopt(c.get(), CURLOPT_FILETIME, 1L);
  curl_easy_setopt(c.get(), CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c.get(), CURLOPT_HEADERDATA, &v);
  if (curl_easy_perform(c.get()) != CURLE_OK) return false;
  curl_off_t size = -1, modified = -1;
  curl_easy_getinfo(c.get(), CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &size);
  curl_easy_getinfo(c.get(), CURLINFO_FILETIME_T, &modified);
  v.size = size;
  v.modified = modified;
  return true;
}

/// A body being received into a file: written, hashed when a checksum asks for it, its progress
/// reported now and then.
struct Sink {
  int fd;
  Sha256* hash;
  std::uint64_t bytes = 0;
  bool write_failed = false;
  const FetchOptions* options;
  const std::string* url;
  std::chrono::steady_clock::time_point next_report;
};

std::size_t on_data(char* data, std::size_t size, std::size_t n, void* user) {
  auto* s = static_cast<Sink*>(user);
  std::size_t len = size * n;
  if (!write_all(s->fd, data, len)) {
    s->write_failed = true;
    return 0;  // makes curl stop with CURLE_WRITE_ERROR
  }
  if (s->hash) s->hash->update(data, len);
  s->bytes += len;
  return len;
}

int on_progress(void* user, curl_off_t total, curl_off_t now, curl_off_t, curl_off_t) {
  auto* s = static_cast<Sink*>(user);
  if (!s->options->log) return 0;
  auto t = std::chrono::steady_clock::now();
  if (t >= s->next_report) {
    if (s->next_report.time_since_epoch().count() != 0) {
      s->options->log(total > 0 ? fmt::format("staging {}: {} of {} bytes", *s->url, now, total)
                                : fmt::format("staging {}: {} bytes", *s->url, now));
    }
    s->next_report = t + std::chrono::milliseconds(static_cast<long>(s->options->progress_interval * 1000));
  }
  return 0;
}

/// Receives the URL into fd from byte `offset` on (what fd holds before was hashed into `hash`,
/// when there is one); "" or the error. A server that ignores the range is asked again from the
/// start.
std::string receive(const std::string& url, const FetchOptions& o, int fd, std::uint64_t offset, Sha256* hash,
                    std::uint64_t& bytes) {
  char errbuf[CURL_ERROR_SIZE];
  Curl c = make_handle(url, o, errbuf);
  Sink sink{fd, hash, 0, false, &o, &url, {}};
  curl_easy_setopt(c.get(), CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(c.get(), CURLOPT_WRITEDATA, &sink);
  curl_easy_setopt(c.get(), CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(c.get(), CURLOPT_XFERINFODATA, &sink);
  curl_easy_setopt(c.get(), CURLOPT_NOPROGRESS, 0L);
  if (offset > 0) curl_easy_setopt(c.get(), CURLOPT_RESUME_FROM_LARGE, static_cast<curl_off_t>(offset));
  CURLcode code = curl_easy_perform(c.get());
  long response = 0;
  curl_easy_getinfo(c.get(), CURLINFO_RESPONSE_CODE, &response);
  bool cannot_resume = code == CURLE_RANGE_ERROR || code == CURLE_BAD_DOWNLOAD_RESUME ||
                       (code == CURLE_HTTP_RETURNED_ERROR && response == 416);
  if (cannot_resume && offset > 0) {  // no ranges here, or the part is not a prefix: start again
    if (::ftruncate(fd, 0) != 0 || ::lseek(fd, 0, SEEK_SET) != 0) return errno_text("cannot truncate");
    if (hash) hash->reset();
    return receive(url, o, fd, 0, hash, bytes);
  }
  bytes = offset + sink.bytes;
  if (sink.write_failed) return errno_text("cannot write the file");
  if (code != CURLE_OK) return describe(c.get(), code, errbuf, o.timeout);
  return "";
}

std::string checksum_error(const std::string& expected, const std::string& hex) {
  return fmt::format("checksum mismatch: expected {}, received sha256:{}", expected, hex);
}

/// Copies what fd holds to `path` (temporary name, then rename); `unchanged`, when given, must still
/// hold once the copy is complete (else the copy may be torn: nothing is renamed into place).
std::string deliver(int fd, const std::string& path, const std::function<bool()>& unchanged = {}) {
  PartFile part(path);
  if (!part.error().empty()) return part.error();
  struct stat st{};
  if (::fstat(fd, &st) != 0) return errno_text("cannot read the cache entry");
  if (::ioctl(part.fd(), FICLONE, fd) == 0) return part.commit() ? "" : part.error();  // shares blocks (btrfs, xfs)
  loff_t in = 0;
  auto left = static_cast<std::uint64_t>(st.st_size);
  while (left > 0) {
    ssize_t n = ::copy_file_range(fd, &in, part.fd(), nullptr, std::min(left, kCopyChunk), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {  // another file system, or no copy_file_range: read and write
      std::vector<char> buf(1 << 20);
      while (left > 0) {
        ssize_t r = ::pread(fd, buf.data(), std::min<std::uint64_t>(left, buf.size()), in);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0 || !write_all(part.fd(), buf.data(), static_cast<std::size_t>(r)))
          return errno_text(fmt::format("cannot copy the cache entry to {}", path));
        in += r;
        left -= static_cast<std::uint64_t>(r);
      }
      break;
    }
    left -= static_cast<std::uint64_t>(n);
  }
  if (unchanged && !unchanged()) return "the cache entry changed while it was copied";
  return part.commit() ? "" : part.error();
}

/// Puts the entry itself (a hard link: no copy) under `path`; false when the file systems differ
/// or links are refused (the caller copies then).
bool deliver_link(const std::string& entry, const std::string& path) {
  std::string dir = directory_of(path);
  if (!make_dirs(dir, 0777)) return false;
  static thread_local std::minstd_rand pick{static_cast<unsigned>(::getpid()) ^ static_cast<unsigned>(
      std::chrono::steady_clock::now().time_since_epoch().count())};
  for (int attempt = 0; attempt < 8; ++attempt) {
    std::string temp = fmt::format("{}/.{}.{:08x}.part", dir, base_of(path), pick());
    if (::link(entry.c_str(), temp.c_str()) == 0) {
      bool moved = ::rename(temp.c_str(), path.c_str()) == 0;
      ::unlink(temp.c_str());  // left there when path already was a link to the entry
      return moved;
    }
    if (errno != EEXIST) return false;
  }
  return false;
}

/// "size mtime": what an entry looked like when stored. The file a download was delivered to is
/// the entry itself (a hard link); a task that writes to it changes the entry's mtime, and the
/// entry is then dropped instead of being served.
std::string stamp_of(int fd) {
  struct stat st{};
  if (::fstat(fd, &st) != 0) return "?";
  return fmt::format("{} {}.{:09}", st.st_size, st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
}

/// Blocks until one of the node's max_parallel transfer slots is free; holds it while alive.
std::unique_ptr<FileLock> take_slot(const FetchOptions& o) {
  std::string dir = o.cache_dir + "/slots";
  make_dirs(dir, 0700);
  int n = std::max(1, o.max_parallel);
  for (int i = 0; i < n; ++i) {
    if (auto lock = FileLock::take(fmt::format("{}/{}", dir, i), false)) return lock;
  }
  static thread_local std::minstd_rand pick{static_cast<unsigned>(::getpid()) ^ static_cast<unsigned>(
      std::chrono::steady_clock::now().time_since_epoch().count())};
  return FileLock::take(fmt::format("{}/{}", dir, pick() % static_cast<unsigned>(n)), true);
}

void drop_entry(const std::string& entry) {
  for (const char* suffix : {"", ".sha256", ".stamp"}) ::unlink((entry + suffix).c_str());
}

/// Removes least recently used entries (by access time, which the cache sets when it serves one)
/// until the cache holds at most cache_limit bytes.
void evict(const FetchOptions& o) {
  struct Entry {
    std::string name;
    std::uint64_t size;
    struct timespec used;
  };
  std::vector<Entry> entries;
  std::uint64_t total = 0;
  if (DIR* d = ::opendir(o.cache_dir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (name.size() != 64 || name.find('.') != std::string::npos) continue;  // entries are bare keys
      struct stat st{};
      if (::stat((o.cache_dir + "/" + name).c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
      entries.push_back({name, static_cast<std::uint64_t>(st.st_size), st.st_atim});
      total += static_cast<std::uint64_t>(st.st_size);
    }
    ::closedir(d);
  }
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.used.tv_sec != b.used.tv_sec ? a.used.tv_sec < b.used.tv_sec : a.used.tv_nsec < b.used.tv_nsec;
  });
  for (const auto& e : entries) {
    if (total <= o.cache_limit) break;
    std::string path = o.cache_dir + "/" + e.name;
    // Readers hold the entry open: unlinking it under them is safe.
    drop_entry(path);
    total -= e.size;
    if (o.log) o.log(fmt::format("staging cache: evicted {} ({} bytes)", e.name, e.size));
  }
}

/// The cache directory exists, is this user's and no one else may write to it (else entries could be
/// planted there).
bool private_dir(const std::string& dir) {
  if (!make_dirs(dir, 0700)) return false;
  struct stat st{};
  return ::stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == ::geteuid() && (st.st_mode & 077) == 0;
}

FetchResult fail(std::string error) {
  FetchResult r;
  r.error = std::move(error);
  return r;
}

/// Without the cache: straight to a temporary file beside `path`.
FetchResult fetch_direct(const std::string& url, const std::string& path, const FetchOptions& o) {
  std::unique_ptr<FileLock> slot;
  if (!o.cache_dir.empty()) slot = take_slot(o);
  PartFile part(path);
  if (!part.error().empty()) return fail(part.error());
  // Hashing costs a fifth of a loopback transfer's time: only when a checksum asks for it.
  Sha256 hash;
  Sha256* h = o.checksum.empty() ? nullptr : &hash;
  FetchResult r;
  if (auto error = receive(url, o, part.fd(), 0, h, r.bytes); !error.empty()) return fail(error);
  if (h) {
    r.sha256 = hash.hex();
    if (o.checksum != "sha256:" + r.sha256) return fail(checksum_error(o.checksum, r.sha256));
  }
  if (!part.commit()) return fail(part.error());
  r.ok = true;
  return r;
}

std::string read_text(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return "";
  char buf[128];
  ssize_t n = ::read(fd.get(), buf, sizeof buf);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : "";
}

/// Writes a small sidecar file of an entry; a failure only costs recomputing it (or refetching) later.
void write_text(const std::string& path, const std::string& text) {
  Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (fd) write_all(fd.get(), text.data(), text.size());
}

/// Keeps an entry's digest beside it (<key>.sha256).
void store_digest(const std::string& entry, const std::string& hex) { write_text(entry + ".sha256", hex); }

/// fetch() through the node cache; an entry that changes while it is copied out is dropped and
/// fetched again once (`second`).
FetchResult fetch_cached(const std::string& url, const std::string& path, const FetchOptions& o, bool second) {
  Validators v;
  if (!head(url, o, v) || !v.usable()) return fetch_direct(url, path, o);  // nothing to key a cache entry by
  const std::string key = sha256_of(fmt::format("{}\n{}\n{}\n{}", url, v.etag, v.modified, v.size));
  const std::string entry = o.cache_dir + "/" + key;
  FetchResult r;
  Fd content;
  std::string stamp;  // the entry's, as stored
  {
    // One transfer of a key per node: the others wait here, then find the entry.
    auto lock = FileLock::take(entry + ".lock", true);
    if (!lock) return fail(errno_text(fmt::format("cannot lock the cache entry {}", entry)));
    content = Fd(::open(entry.c_str(), O_RDONLY | O_CLOEXEC));
    stamp = read_text(entry + ".stamp");
    if (content && stamp_of(content.get()) != stamp) {
      if (o.log) o.log(fmt::format("staging {}: the cached copy was written to since it was stored: fetching again", url));
      drop_entry(entry);
      content = Fd();
    }
    if (content) {
      r.from_cache = true;
      const struct timespec used[2] = {{0, UTIME_NOW}, {0, UTIME_OMIT}};
      ::futimens(content.get(), used);
    } else {
      auto slot = take_slot(o);
      // A transfer interrupted earlier left <key>.part: resume it (same validators, same content).
      const std::string part_path = entry + ".part";
      Fd part(::open(part_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
      if (!part) return fail(errno_text(fmt::format("cannot write {}", part_path)));
      Sha256 hash;
      Sha256* h = o.checksum.empty() ? nullptr : &hash;
      std::uint64_t have = 0;
      off_t end = ::lseek(part.get(), 0, SEEK_END);
      if (end < 0 || (h && (!hash_file(part.get(), hash, have) || ::lseek(part.get(), 0, SEEK_END) < 0))) {
        return fail(errno_text(fmt::format("cannot read {}", part_path)));
      }
      have = static_cast<std::uint64_t>(end);
      if (have > 0 && o.log) o.log(fmt::format("staging {}: resuming at byte {}", url, have));
      if (auto error = receive(url, o, part.get(), have, h, r.bytes); !error.empty()) {
        return fail(error);  // <key>.part stays for the retry to resume
      }
      if (h) {
        r.sha256 = hash.hex();
        if (o.checksum != "sha256:" + r.sha256) {
          ::unlink(part_path.c_str());
          return fail(checksum_error(o.checksum, r.sha256));
        }
        store_digest(entry, r.sha256);
      }
      // The mode the task's file gets (it is delivered as a link to the entry; the directory is private).
      if (::fchmod(part.get(), 0666 & ~current_umask()) != 0 || ::rename(part_path.c_str(), entry.c_str()) != 0) {
        return fail(errno_text(fmt::format("cannot store {}", entry)));
      }
      content = std::move(part);
      stamp = stamp_of(content.get());
      write_text(entry + ".stamp", stamp);
    }
    if (!o.checksum.empty() && r.sha256.empty()) {
      // An entry fetched without a checksum: its digest is computed once and kept beside it.
      r.sha256 = read_text(entry + ".sha256");
      std::uint64_t size = 0;
      Sha256 hash;
      if (r.sha256.empty()) {
        if (!hash_file(content.get(), hash, size)) return fail(errno_text(fmt::format("cannot read {}", entry)));
        r.sha256 = hash.hex();
        store_digest(entry, r.sha256);
      }
    }
  }
  if (!r.from_cache) evict(o);
  if (!o.checksum.empty() && o.checksum != "sha256:" + r.sha256) return fail(checksum_error(o.checksum, r.sha256));
  struct stat st{};
  if (::fstat(content.get(), &st) == 0) r.bytes = static_cast<std::uint64_t>(st.st_size);
  // The task that fetched gets the entry itself (no copy); the others a copy, which must not be
  // torn by that task writing to its file meanwhile.
  if (!r.from_cache && deliver_link(entry, path)) {
    r.ok = true;
    return r;
  }
  int fd = content.get();
  if (auto error = deliver(fd, path, [&] { return stamp_of(fd) == stamp; }); !error.empty()) {
    if (!second && stamp_of(fd) != stamp) return fetch_cached(url, path, o, true);
    return fail(error);
  }
  r.ok = true;
  return r;
}

}  // namespace

FetchResult fetch(const std::string& url, const std::string& path, const FetchOptions& o) {
  if (o.cache_dir.empty()) return fetch_direct(url, path, o);
  if (!private_dir(o.cache_dir)) {
    if (o.log) o.log(fmt::format("staging cache {} is not a directory of this user's only: not used", o.cache_dir));
    FetchOptions uncached = o;
    uncached.cache_dir.clear();
    return fetch_direct(url, path, uncached);
  }
  return fetch_cached(url, path, o, false);
}

}  // namespace pervade::staging
