// pervade::staging: the transfers behind File staging (docs/staging.md): http, https and ftp through
// libcurl, atomic, verified, and shared between the processes of a node through a node cache.
// Who may call it: any thread; fetch() blocks the calling thread until the transfer ends (the Python
// binding releases the GIL around it).
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace pervade::staging {

/// Options of one fetch().
struct FetchOptions {
  std::string checksum;  ///< "sha256:<64 hex digits>", or empty: not verified
  double timeout = 60;   ///< seconds without progress (connecting, or between data) before failing
  /// The node cache, shared by every process of the node that uses the same directory; empty: no
  /// cache, no per-node limit.
  std::string cache_dir;
  std::uint64_t cache_limit = 10ULL << 30;  ///< bytes the cache keeps (least recently used go first)
  int max_parallel = 4;                     ///< transfers at once per cache_dir
  double progress_interval = 10;            ///< seconds between progress lines of a long transfer
  std::function<void(const std::string&)> log;  ///< gets progress and cache lines (may be empty)
};

/// What fetch() did.
struct FetchResult {
  bool ok = false;
  std::string error;  ///< why not, when !ok (the URL is the caller's to add)
  bool from_cache = false;   ///< delivered from the node cache, without a transfer
  std::uint64_t bytes = 0;   ///< size of the file
  std::string sha256;        ///< hex digest of its content, when a checksum was asked for
};

/// Fetches an http, https or ftp URL to `path`. The file appears under `path` only complete and
/// verified (written beside it under a temporary name, then renamed); a failure leaves nothing
/// there. With a cache_dir, the URL's validators (ETag, Last-Modified, size: one HEAD request)
/// key a cache entry: tasks of a node asking for the same URL share one transfer, later ones copy
/// the entry; a transfer interrupted before it completed resumes where it stopped (HTTP ranges,
/// FTP REST) when the validators are unchanged. HTTPS trusts $SSL_CERT_FILE / $SSL_CERT_DIR when set.
///
///   auto r = pervade::staging::fetch("https://example.org/x.csv", "/scratch/x.csv", {});
///   if (!r.ok) throw std::runtime_error(r.error);
FetchResult fetch(const std::string& url, const std::string& path, const FetchOptions& options);

}  // namespace pervade::staging
