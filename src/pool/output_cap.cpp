#include "pool/output_cap.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "util/fd.hpp"
#include "util/thread_name.hpp"

namespace pervade::pool {

using detail::Fd;

namespace {

bool write_all(int fd, const char* p, std::size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

// Where one of the pool's outputs really goes, and how much of it is there.
struct Sink {
  std::vector<int> targets;  // 1, 2, or both when they are the same file
  Fd pipe_read;
  Fd file;                   // the original file (a copy of the descriptor)
  std::string path;          // its name, when it is a regular file we may rotate
  std::uint64_t size = 0;
  bool dropping = false;     // not rotatable and full

  void copy(const char* data, std::size_t n, std::uint64_t limit) {
    if (size + n > limit && size > 0) {
      if (!path.empty() && rotate()) {
        size = 0;
      } else if (!dropping) {
        dropping = true;
        const std::string note = fmt::format(
            "pervade-pool: output past {} bytes is dropped (this output cannot be rotated)\n", limit);
        write_all(file.get(), note.data(), note.size());
      }
    }
    if (dropping) return;
    if (write_all(file.get(), data, n)) size += n;
  }

  bool rotate() {
    const std::string old = path + ".1";
    if (::rename(path.c_str(), old.c_str()) != 0) return false;
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return false;  // keep writing into NAME.1
    file = Fd(fd);
    return true;
  }
};

// The name of a regular file open on fd, or "" (a pipe, a terminal, a deleted file).
std::string regular_file_path(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return "";
  char buf[4096];
  const ssize_t n = ::readlink(fmt::format("/proc/self/fd/{}", fd).c_str(), buf, sizeof buf - 1);
  if (n <= 0 || buf[0] != '/') return "";
  std::string path(buf, static_cast<std::size_t>(n));
  struct stat named {};
  if (::stat(path.c_str(), &named) != 0 || named.st_ino != st.st_ino || named.st_dev != st.st_dev) return "";
  return path;
}

// A terminal or /dev/null: nothing is kept, nothing to cap (a person may be reading it).
bool keeps_nothing(int fd) {
  struct stat st {};
  return ::fstat(fd, &st) != 0 || S_ISCHR(st.st_mode);
}

bool same_file(int a, int b) {
  struct stat sa {}, sb {};
  return ::fstat(a, &sa) == 0 && ::fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

}  // namespace

struct OutputCap::Impl {
  std::uint64_t limit;
  std::vector<Sink> sinks;
  std::thread thread;
  std::atomic<bool> finishing{false};

  // Copies until every pipe is at its end (after finish(): or a second has passed).
  void run() {
    detail::name_this_thread("pv-output");
    std::vector<char> buf(64 << 10);
    std::vector<pollfd> fds;
    for (auto& s : sinks) fds.push_back({s.pipe_read.get(), POLLIN, 0});
    std::size_t open = fds.size();
    std::chrono::steady_clock::time_point give_up{};
    while (open > 0) {
      if (finishing.load() && give_up == std::chrono::steady_clock::time_point{})
        give_up = std::chrono::steady_clock::now() + std::chrono::seconds(1);
      if (give_up != std::chrono::steady_clock::time_point{} && std::chrono::steady_clock::now() > give_up) return;
      if (::poll(fds.data(), fds.size(), 100) < 0 && errno != EINTR) return;
      for (std::size_t i = 0; i < fds.size(); ++i) {
        if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        const ssize_t n = ::read(fds[i].fd, buf.data(), buf.size());
        if (n > 0) {
          sinks[i].copy(buf.data(), static_cast<std::size_t>(n), limit);
        } else if (n == 0 || errno != EINTR) {
          fds[i].fd = -1;  // every writer is gone
          --open;
        }
      }
    }
  }
};

OutputCap::OutputCap(std::uint64_t limit) {
  if (limit == 0) return;
  auto im = std::make_unique<Impl>();
  im->limit = limit;
  const bool joined = same_file(STDOUT_FILENO, STDERR_FILENO);
  for (int target : {STDOUT_FILENO, STDERR_FILENO}) {
    if (keeps_nothing(target)) continue;
    if (target == STDERR_FILENO && joined && !im->sinks.empty()) {
      im->sinks.front().targets.push_back(target);
      continue;
    }
    const int copy = ::fcntl(target, F_DUPFD_CLOEXEC, 3);
    if (copy < 0) return;  // not open, or no descriptor left: leave the output as it is
    Sink s;
    s.targets = {target};
    s.file = Fd(copy);
    s.path = regular_file_path(copy);
    struct stat st {};
    if (::fstat(copy, &st) == 0 && S_ISREG(st.st_mode)) s.size = static_cast<std::uint64_t>(st.st_size);
    im->sinks.push_back(std::move(s));
  }
  if (im->sinks.empty()) return;
  std::vector<Fd> write_ends;
  for (auto& s : im->sinks) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) return;
    s.pipe_read = Fd(p[0]);
    write_ends.emplace_back(p[1]);
    ::fcntl(p[1], F_SETPIPE_SZ, 1 << 20);  // room for bursts of output without blocking tasks
  }
  try {
    Impl* raw = im.get();
    im->thread = std::thread([raw] { raw->run(); });
  } catch (const std::system_error&) {
    return;
  }
  // dup2 clears close-on-exec: workers and shell tasks inherit the pipes as their 1 and 2.
  for (std::size_t i = 0; i < im->sinks.size(); ++i)
    for (int target : im->sinks[i].targets) ::dup2(write_ends[i].get(), target);
  impl_ = std::move(im);
}

OutputCap::~OutputCap() { finish(); }

void OutputCap::finish() {
  if (!impl_) return;
  std::fflush(stdout);
  std::fflush(stderr);
  // Our ends of the pipes close; what the pool writes from now on goes to the files.
  for (auto& s : impl_->sinks)
    for (int target : s.targets) ::dup2(s.file.get(), target);
  impl_->finishing.store(true);
  impl_->thread.join();
  impl_.reset();
}

}  // namespace pervade::pool
