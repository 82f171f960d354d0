// Worker count and CPU assignment of pervade-pool: see resources.hpp.
#include "pool/resources.hpp"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include <fmt/format.h>

namespace pervade::pool {

namespace {

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  for (;;) {
    const auto at = s.find(sep, start);
    out.push_back(s.substr(start, at == std::string_view::npos ? std::string_view::npos : at - start));
    if (at == std::string_view::npos) return out;
    start = at + 1;
  }
}

bool parse_cpu(std::string_view s, int* out) {
  if (s.empty()) return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc{} && ptr == s.data() + s.size() && *out >= 0 && *out < CPU_SETSIZE;
}

// "0,2-3" -> {0, 2, 3} (sorted, without duplicates).
std::optional<std::vector<int>> parse_cpu_set(std::string_view s, std::string* error) {
  std::set<int> cpus;
  for (std::string_view item : split(s, ',')) {
    const auto dash = item.find('-');
    int first = 0, last = 0;
    const bool ok = dash == std::string_view::npos
                        ? parse_cpu(item, &first) && (last = first, true)
                        : parse_cpu(item.substr(0, dash), &first) && parse_cpu(item.substr(dash + 1), &last);
    if (!ok || first > last) {
      *error = fmt::format("'{}' is not a CPU number or range N-M (CPUs 0 to {})", item, CPU_SETSIZE - 1);
      return std::nullopt;
    }
    for (int c = first; c <= last; ++c) cpus.insert(c);
  }
  return std::vector<int>(cpus.begin(), cpus.end());
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// floor(a / b) for counts: a hair of tolerance so that 0.3 cores per worker on 3 CPUs is 10
// workers, not 9 (3 / 0.3 is 9.999... in binary floating point).
long long slots(double a, double b) {
  const double q = a / b;
  if (!(q < 1e9)) return 1'000'000'000;
  return static_cast<long long>(std::floor(q * (1 + 1e-9)));
}

}  // namespace

std::optional<CpuAffinity> parse_cpu_affinity(std::string_view spec, std::string* error) {
  const std::string s = lower(spec);
  CpuAffinity a;
  if (s == "none") {
    a.mode = AffinityMode::kNone;
  } else if (s == "block") {
    a.mode = AffinityMode::kBlock;
  } else if (s == "block-reverse") {
    a.mode = AffinityMode::kBlockReverse;
  } else if (s == "alternating") {
    a.mode = AffinityMode::kAlternating;
  } else if (s.rfind("list:", 0) == 0) {
    a.mode = AffinityMode::kList;
    const auto entries = split(std::string_view(s).substr(5), ':');
    for (std::size_t i = 0; i < entries.size(); ++i) {
      std::string why;
      auto cpus = parse_cpu_set(entries[i], &why);
      if (!cpus) {
        *error = fmt::format("bad cpu affinity '{}': worker {}'s entry: {}", spec, i, why);
        return std::nullopt;
      }
      a.lists.push_back(std::move(*cpus));
    }
  } else {
    *error = fmt::format(
        "bad cpu affinity '{}': expected none, block, block-reverse, alternating or list:<cpus>:<cpus>... "
        "(e.g. list:0,1:2-3)",
        spec);
    return std::nullopt;
  }
  return a;
}

std::optional<NodeResources> read_node_resources(std::string* error) {
  NodeResources node;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) == 0)
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &set)) node.cpus.push_back(c);
  node.cpu_count = static_cast<int>(node.cpus.size());
  if (node.cpu_count == 0) {
    const long n = ::sysconf(_SC_NPROCESSORS_ONLN);
    node.cpu_count = n > 0 ? static_cast<int>(n) : 1;
  }
  if (const char* v = std::getenv("PARSL_CORES"); v != nullptr && *v != '\0') {
    int n = 0;
    auto [ptr, ec] = std::from_chars(v, v + std::strlen(v), n);
    if (ec != std::errc{} || *ptr != '\0' || n < 1) {
      *error = fmt::format("PARSL_CORES='{}' is not an integer >= 1", v);
      return std::nullopt;
    }
    node.cpu_count = n;
  }

  if (const char* v = std::getenv("PARSL_MEMORY_GB"); v != nullptr && *v != '\0') {
    char* end = nullptr;
    errno = 0;
    const double gb = std::strtod(v, &end);
    if (errno != 0 || end == v || *end != '\0' || !std::isfinite(gb) || gb < 0) {
      *error = fmt::format("PARSL_MEMORY_GB='{}' is not a number >= 0", v);
      return std::nullopt;
    }
    node.mem_available_gb = gb;
  } else {
    std::ifstream in("/proc/meminfo");
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("MemAvailable:", 0) != 0) continue;
      std::istringstream fields(line.substr(13));
      double kib = 0;
      if (fields >> kib) node.mem_available_gb = std::round(kib / (1024.0 * 1024.0) * 10) / 10;
      break;
    }
  }
  return node;
}

std::string format_cpu_list(const std::vector<int>& cpus) {
  std::string out;
  for (std::size_t i = 0; i < cpus.size();) {
    std::size_t j = i;
    while (j + 1 < cpus.size() && cpus[j + 1] == cpus[j] + 1) ++j;
    if (!out.empty()) out += ',';
    out += j == i ? std::to_string(cpus[i]) : fmt::format("{}-{}", cpus[i], cpus[j]);
    i = j + 1;
  }
  return out;
}

WorkerPlan plan_workers(const WorkerRequest& r, const CpuAffinity& affinity, const NodeResources& node) {
  WorkerPlan plan;
  std::vector<std::string> terms;
  long long count = 0;
  if (r.workers > 0) {
    count = r.workers;
    terms.push_back(fmt::format("--workers {}", r.workers));
  } else {
    const int cpus = std::max(node.cpu_count, 1);
    count = slots(cpus, r.cores_per_worker);
    terms.push_back(fmt::format("{} CPUs / {:g} cores per worker = {}", cpus, r.cores_per_worker, count));
    if (r.mem_per_worker > 0) {
      if (node.mem_available_gb) {
        const long long by_mem = slots(*node.mem_available_gb, r.mem_per_worker);
        terms.push_back(fmt::format("{:.1f} GB available / {:g} GB per worker = {}", *node.mem_available_gb,
                                    r.mem_per_worker, by_mem));
        count = std::min(count, by_mem);
      } else {
        plan.warnings.push_back("the available memory is unknown (no MemAvailable in /proc/meminfo); "
                                "--mem-per-worker does not limit the worker count");
      }
    }
    if (r.max_workers > 0) {
      terms.push_back(fmt::format("at most {} (--max-workers)", r.max_workers));
      count = std::min<long long>(count, r.max_workers);
    }
  }
  if (r.accelerators > 0) {
    terms.push_back(fmt::format("{} accelerators", r.accelerators));
    count = std::min<long long>(count, static_cast<long long>(r.accelerators));
  }
  if (count < 1) {
    plan.warnings.push_back("the node's resources allow no worker; starting 1 anyway");
    count = 1;
  }
  plan.count = static_cast<int>(std::min<long long>(count, 1'000'000));
  plan.reason = fmt::format("{} worker{}: ", plan.count, plan.count == 1 ? "" : "s");
  for (std::size_t i = 0; i < terms.size(); ++i) plan.reason += (i == 0 ? "" : "; ") + terms[i];

  if (affinity.mode == AffinityMode::kNone) return plan;
  const std::size_t workers = static_cast<std::size_t>(plan.count);
  if (affinity.mode == AffinityMode::kList) {
    if (affinity.lists.size() < workers) {
      plan.error = fmt::format(
          "--cpu-affinity list has {} entr{} but the pool starts {} (one CPU list per worker is needed; "
          "give more lists or fewer workers)",
          affinity.lists.size(), affinity.lists.size() == 1 ? "y" : "ies", plan.reason);
      return plan;
    }
    const std::set<int> usable(node.cpus.begin(), node.cpus.end());
    for (std::size_t w = 0; w < workers; ++w) {
      for (int c : affinity.lists[w]) {
        if (!usable.count(c)) {
          plan.error = fmt::format("--cpu-affinity list: CPU {} (worker {}) is not one the pool may use ({})", c, w,
                                   format_cpu_list(node.cpus));
          return plan;
        }
      }
      plan.cpus.push_back(affinity.lists[w]);
    }
    if (affinity.lists.size() > workers)
      plan.warnings.push_back(fmt::format("--cpu-affinity list has {} entries for {} workers; the rest are unused",
                                          affinity.lists.size(), workers));
    return plan;
  }

  const std::size_t n = node.cpus.size();
  if (n == 0) {
    plan.warnings.push_back("the pool's CPUs are unknown (sched_getaffinity failed); workers are not pinned");
    return plan;
  }
  if (workers > n)
    plan.warnings.push_back(fmt::format("{} workers on {} CPUs: pinned workers share CPUs", workers, n));
  const std::size_t per = std::max<std::size_t>(1, n / workers);
  for (std::size_t w = 0; w < workers; ++w) {
    std::set<int> mine;
    if (affinity.mode == AffinityMode::kAlternating) {
      for (std::size_t p = w; p < n; p += workers) mine.insert(node.cpus[p]);
      if (mine.empty()) mine.insert(node.cpus[w % n]);
    } else {
      const std::size_t block = affinity.mode == AffinityMode::kBlockReverse ? workers - 1 - w : w;
      for (std::size_t i = 0; i < per; ++i) mine.insert(node.cpus[(block * per + i) % n]);
    }
    plan.cpus.emplace_back(mine.begin(), mine.end());
  }
  return plan;
}

}  // namespace pervade::pool
