#pragma once
// Directories and files only their owner may read (0700 / 0600): what pervade writes under a
// run_dir (logs with task output, keys, checkpoints, job scripts) is not for other local users.
// Any thread.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <string>
#include <system_error>

namespace pervade::detail {

// Like std::filesystem::create_directories, but each directory it makes has mode 0700 (one
// that exists already is left as it is). Returns false with ec set on failure.
inline bool create_private_directories(const std::filesystem::path& dir, std::error_code& ec) {
  ec.clear();
  if (dir.empty() || std::filesystem::is_directory(dir, ec)) return !ec;
  if (dir.has_parent_path() && dir.parent_path() != dir && !create_private_directories(dir.parent_path(), ec))
    return false;
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    ec = std::error_code(errno, std::generic_category());
    return false;
  }
  return true;
}

// Writes content to path (replacing it) as a file of mode 0600. Returns false with ec set.
inline bool write_private_file(const std::string& path, const std::string& content, std::error_code& ec) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    ec = std::error_code(errno, std::generic_category());
    return false;
  }
  // An existing file keeps its mode through O_TRUNC: make it private before writing.
  bool ok = ::fchmod(fd, 0600) == 0;
  for (std::size_t done = 0; ok && done < content.size();) {
    const ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    ok = n > 0;
    if (ok) done += static_cast<std::size_t>(n);
  }
  if (!ok) ec = std::error_code(errno ? errno : EIO, std::generic_category());
  ::close(fd);
  return ok;
}

}  // namespace pervade::detail
