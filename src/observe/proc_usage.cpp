#include "observe/proc_usage.hpp"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <unordered_map>

namespace pervade::detail {
namespace {

const double kTick = static_cast<double>(::sysconf(_SC_CLK_TCK));
const std::uint64_t kPage = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));

std::string read_all(const std::string& path) {
  std::ifstream in(path);
  if (!in) return {};
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// "key:   123" lines (status, io).
std::uint64_t field(const std::string& text, const char* key) {
  const auto at = text.find(key);
  if (at == std::string::npos) return 0;
  return std::strtoull(text.c_str() + at + std::strlen(key), nullptr, 10);
}

std::string base(pid_t pid, pid_t tid) {
  return tid ? "/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) : "/proc/" + std::to_string(pid);
}

}  // namespace

ProcUsage ProcUsage::since(const ProcUsage& e) const {
  ProcUsage d = *this;
  const auto minus = [](std::uint64_t a, std::uint64_t b) { return a > b ? a - b : 0; };
  d.cpu_user = std::max(0.0, cpu_user - e.cpu_user);
  d.cpu_system = std::max(0.0, cpu_system - e.cpu_system);
  d.read_bytes = minus(read_bytes, e.read_bytes);
  d.write_bytes = minus(write_bytes, e.write_bytes);
  d.ctx_voluntary = minus(ctx_voluntary, e.ctx_voluntary);
  d.ctx_involuntary = minus(ctx_involuntary, e.ctx_involuntary);
  return d;
}

void ProcUsage::add(const ProcUsage& o) {
  cpu_user += o.cpu_user;
  cpu_system += o.cpu_system;
  rss += o.rss;
  vms += o.vms;
  read_bytes += o.read_bytes;
  write_bytes += o.write_bytes;
  ctx_voluntary += o.ctx_voluntary;
  ctx_involuntary += o.ctx_involuntary;
  processes += o.processes;
}

// CPU and memory from the text of a stat file.
bool parse_stat(std::string_view stat, ProcUsage* u) {
  // The command name (2nd field) may hold spaces and parentheses: fields restart after the last ')'.
  const auto close = stat.rfind(')');
  if (close == std::string_view::npos || close + 2 >= stat.size()) return false;
  const char* p = stat.data() + close + 2;
  const char* end = stat.data() + stat.size();
  // Fields 3..24, space-separated: 14 utime, 15 stime (ticks), 23 vsize (bytes), 24 rss (pages);
  // only those are parsed (this runs once per task on a pool).
  std::uint64_t values[25] = {};
  for (int field = 3; field <= 24; ++field) {
    while (p < end && *p == ' ') ++p;
    if (p >= end) return false;
    if (field == 14 || field == 15 || field == 23 || field == 24)
      values[field] = std::strtoull(p, const_cast<char**>(&p), 10);
    while (p < end && *p != ' ') ++p;
  }
  u->cpu_user = static_cast<double>(values[14]) / kTick;
  u->cpu_system = static_cast<double>(values[15]) / kTick;
  u->vms = values[23];
  u->rss = values[24] * kPage;
  u->processes = 1;
  return true;
}

bool read_stat_fd(int fd, ProcUsage* out) {
  char buf[1024];
  const ssize_t n = ::pread(fd, buf, sizeof buf, 0);
  return n > 0 && parse_stat(std::string_view(buf, static_cast<std::size_t>(n)), out);
}

bool read_usage(pid_t pid, pid_t tid, ProcUsage* out) {
  const std::string dir = base(pid, tid);
  ProcUsage u;
  if (!parse_stat(read_all(dir + "/stat"), &u)) return false;
  const std::string status = read_all(dir + "/status");
  u.ctx_voluntary = field(status, "\nvoluntary_ctxt_switches:");
  u.ctx_involuntary = field(status, "\nnonvoluntary_ctxt_switches:");
  const std::string io = read_all(dir + "/io");  // absent without task I/O accounting
  u.read_bytes = field(io, "read_bytes:");
  u.write_bytes = field(io, "\nwrite_bytes:");
  *out = u;
  return true;
}

bool read_tree_usage(pid_t root, ProcUsage* out) {
  if (!read_usage(root, 0, out)) return false;
  // Parent links of every process (one pass over /proc), then the descendants of root.
  std::unordered_multimap<pid_t, pid_t> children;
  if (DIR* d = ::opendir("/proc")) {
    while (dirent* e = ::readdir(d)) {
      const pid_t pid = static_cast<pid_t>(std::atoi(e->d_name));
      if (pid <= 0) continue;
      const std::string stat = read_all("/proc/" + std::to_string(pid) + "/stat");
      const auto close = stat.rfind(')');
      if (close == std::string::npos) continue;
      std::istringstream in(stat.substr(close + 2));
      std::string state;
      pid_t ppid = 0;
      in >> state >> ppid;
      if (ppid > 0) children.emplace(ppid, pid);
    }
    ::closedir(d);
  }
  std::vector<pid_t> todo{root};
  while (!todo.empty()) {
    const pid_t p = todo.back();
    todo.pop_back();
    auto [b, e] = children.equal_range(p);
    for (auto it = b; it != e; ++it) {
      ProcUsage child;
      if (read_usage(it->second, 0, &child)) out->add(child);
      todo.push_back(it->second);
    }
  }
  return true;
}

ProcUsage this_thread_usage() {
  // One getrusage call, not three /proc files: this runs twice per task. Its counters are the
  // same the kernel shows in /proc/self/task/<tid> (read_usage); memory is the process's peak.
  rusage r{};
  ::getrusage(RUSAGE_THREAD, &r);
  ProcUsage u;
  u.cpu_user = static_cast<double>(r.ru_utime.tv_sec) + static_cast<double>(r.ru_utime.tv_usec) * 1e-6;
  u.cpu_system = static_cast<double>(r.ru_stime.tv_sec) + static_cast<double>(r.ru_stime.tv_usec) * 1e-6;
  u.rss = static_cast<std::uint64_t>(r.ru_maxrss) * 1024;
  u.read_bytes = static_cast<std::uint64_t>(r.ru_inblock) * 512;
  u.write_bytes = static_cast<std::uint64_t>(r.ru_oublock) * 512;
  u.ctx_voluntary = static_cast<std::uint64_t>(r.ru_nvcsw);
  u.ctx_involuntary = static_cast<std::uint64_t>(r.ru_nivcsw);
  u.processes = 1;
  return u;
}

}  // namespace pervade::detail
