#include "pool/mpi_discovery.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <unordered_map>

#include <fmt/format.h>

namespace pervade::pool {

namespace {

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string item;
  std::istringstream in(s);
  while (std::getline(in, item, sep)) out.push_back(item);
  return out;
}

bool parse_positive(const std::string& s, int* out) {
  if (s.empty() || s.size() > 9 || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return false;
  *out = std::stoi(s);
  return *out > 0;
}

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

// Runs `scontrol show hostnames <list>` (the list as an argument, never through a shell).
std::optional<std::string> scontrol_hostnames(const std::string& list, std::string* error) {
  int out[2];
  if (::pipe(out) != 0) {
    *error = "pipe failed";
    return std::nullopt;
  }
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out[1], 1);
    ::close(out[0]);
    ::close(out[1]);
    const char* argv[] = {"scontrol", "show", "hostnames", list.c_str(), nullptr};
    ::execvp("scontrol", const_cast<char* const*>(argv));
    std::fprintf(stderr, "scontrol: cannot run it: not found on PATH\n");
    ::_exit(127);
  }
  ::close(out[1]);
  std::string text;
  char buf[4096];
  for (ssize_t n; (n = ::read(out[0], buf, sizeof buf)) != 0;) {
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    text.append(buf, static_cast<std::size_t>(n));
  }
  ::close(out[0]);
  int status = 0;
  while (pid > 0 && ::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (pid < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    *error = fmt::format("'scontrol show hostnames {}' failed (exit status {})", list,
                         pid < 0 ? -1 : (WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status)));
    return std::nullopt;
  }
  return text;
}

}  // namespace

std::optional<std::vector<MpiNode>> parse_mpi_hosts(const std::string& list, std::string* error) {
  std::vector<MpiNode> nodes;
  int with_cores = 0;
  for (const std::string& item : split(list, ',')) {
    const auto colon = item.find(':');
    MpiNode n{item.substr(0, colon), 0};
    if (n.name.empty()) {
      *error = fmt::format("--mpi-hosts '{}': an empty host name", list);
      return std::nullopt;
    }
    if (colon != std::string::npos) {
      if (!parse_positive(item.substr(colon + 1), &n.cores)) {
        *error = fmt::format("--mpi-hosts '{}': '{}' must be HOST or HOST:CORES with CORES >= 1", list, item);
        return std::nullopt;
      }
      ++with_cores;
    }
    nodes.push_back(std::move(n));
  }
  if (nodes.empty() || (with_cores > 0 && with_cores < static_cast<int>(nodes.size()))) {
    *error = fmt::format("--mpi-hosts '{}': give at least one host, and a core count for all hosts or none", list);
    return std::nullopt;
  }
  return nodes;
}

std::vector<int> parse_slurm_cpus_per_node(const std::string& text) {
  std::vector<int> out;
  for (const std::string& item : split(text, ',')) {
    const auto paren = item.find("(x");
    int cpus = 0, times = 1;
    if (!parse_positive(item.substr(0, paren), &cpus)) return {};
    if (paren != std::string::npos &&
        (item.back() != ')' || !parse_positive(item.substr(paren + 2, item.size() - paren - 3), &times)))
      return {};
    out.insert(out.end(), static_cast<std::size_t>(times), cpus);
  }
  return out;
}

std::vector<MpiNode> parse_pbs_nodefile(const std::string& text) {
  std::vector<MpiNode> nodes;
  std::unordered_map<std::string, std::size_t> index;
  bool repeated = false;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    line.erase(0, line.find_first_not_of(" \t\r"));
    line.erase(line.find_last_not_of(" \t\r") + 1);
    if (line.empty()) continue;
    auto [it, fresh] = index.emplace(line, nodes.size());
    if (fresh)
      nodes.push_back(MpiNode{line, 1});
    else {
      ++nodes[it->second].cores;
      repeated = true;
    }
  }
  if (!repeated)
    for (MpiNode& n : nodes) n.cores = 0;
  return nodes;
}

std::optional<MpiBlock> discover_mpi_block(const std::string& launcher, const std::string& hosts, int own_cores,
                                           std::string* how, std::string* error) {
  MpiBlock block;
  block.launcher = launcher;
  if (!hosts.empty()) {
    auto nodes = parse_mpi_hosts(hosts, error);
    if (!nodes) return std::nullopt;
    block.nodes = std::move(*nodes);
    *how = "--mpi-hosts";
  } else if (const char* list = env("SLURM_NODELIST") ? env("SLURM_NODELIST") : env("SLURM_JOB_NODELIST")) {
    auto text = scontrol_hostnames(list, error);
    if (!text) return std::nullopt;
    for (const std::string& name : split(*text, '\n'))
      if (!name.empty()) block.nodes.push_back(MpiNode{name, 0});
    const std::vector<int> cpus = parse_slurm_cpus_per_node(env("SLURM_JOB_CPUS_PER_NODE") ? env("SLURM_JOB_CPUS_PER_NODE") : "");
    if (cpus.size() == block.nodes.size())
      for (std::size_t i = 0; i < cpus.size(); ++i) block.nodes[i].cores = cpus[i];
    *how = fmt::format("SLURM_NODELIST={}", list);
  } else if (const char* file = env("PBS_NODEFILE")) {
    std::ifstream in(file);
    if (!in) {
      *error = fmt::format("cannot read PBS_NODEFILE '{}'", file);
      return std::nullopt;
    }
    std::stringstream text;
    text << in.rdbuf();
    block.nodes = parse_pbs_nodefile(text.str());
    *how = fmt::format("PBS_NODEFILE={}", file);
  } else {
    *error =
        "MPI mode needs the block's nodes: none of --mpi-hosts, SLURM_NODELIST or PBS_NODEFILE says them (use a batch "
        "provider, or set PBS_NODEFILE in the provider's worker_init)";
    return std::nullopt;
  }
  if (block.nodes.empty()) {
    *error = fmt::format("MPI mode: {} names no node", *how);
    return std::nullopt;
  }
  block.cores_known = std::all_of(block.nodes.begin(), block.nodes.end(), [](const MpiNode& n) { return n.cores > 0; });
  if (!block.cores_known)
    for (MpiNode& n : block.nodes) n.cores = std::max(1, own_cores);
  return block;
}

}  // namespace pervade::pool
