#include "executors/htex/blocks.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <string_view>
#include <system_error>
#include <tuple>
#include <typeinfo>

#include <fmt/format.h>
#include <zmq.h>

#include "pervade/errors.hpp"
#include "pervade/launchers.hpp"
#include "util/private_files.hpp"
#include "util/same_host.hpp"

// Where `cmake --install` puts pervade-pool, and where the build tree has it (CMakeLists.txt).
#ifndef PERVADE_POOL_INSTALL_PATH
#define PERVADE_POOL_INSTALL_PATH ""
#endif
#ifndef PERVADE_POOL_BUILD_PATH
#define PERVADE_POOL_BUILD_PATH ""
#endif

namespace pervade::detail {

namespace {
bool executable(const std::string& path) { return !path.empty() && ::access(path.c_str(), X_OK) == 0; }
}  // namespace

std::string resolve_pool_binary(const std::string& configured) {
  if (!configured.empty()) {
    if (executable(configured)) return configured;
    throw ConfigurationError(fmt::format("HighThroughputExecutor pool_binary '{}' is not an executable file", configured));
  }
  if (const char* env = std::getenv("PERVADE_POOL_BINARY"); env != nullptr && *env != '\0') {
    if (executable(env)) return env;
    throw ConfigurationError(fmt::format("PERVADE_POOL_BINARY='{}' is not an executable file", env));
  }
  // The installed binary first: a library installed from a build tree must not keep using
  // that tree's (possibly rebuilt or deleted) binary when the installed one is there.
  for (const char* candidate : {PERVADE_POOL_INSTALL_PATH, PERVADE_POOL_BUILD_PATH})
    if (executable(candidate)) return candidate;
  throw ConfigurationError(fmt::format(
      "pervade-pool not found (tried '{}' and '{}'): install pervade (cmake --install), or set "
      "HtexOptions::pool_binary or PERVADE_POOL_BINARY",
      PERVADE_POOL_INSTALL_PATH, PERVADE_POOL_BUILD_PATH));
}

std::pair<std::string, std::string> curve_keypair() {
  char public_key[41], secret_key[41];
  if (zmq_curve_keypair(public_key, secret_key) != 0)
    throw Error(fmt::format("cannot make a CurveZMQ key pair: {}", zmq_strerror(zmq_errno())));
  return {public_key, secret_key};
}

BlockManager::BlockManager(HtexOptions& o)
    : provider_(o.provider),
      label_(o.label),
      address_(o.address),
      binary_(resolve_pool_binary(o.pool_binary)),
      log_dir_((std::filesystem::path(o.run_dir.empty() ? "." : o.run_dir) / o.label).string()),
      init_blocks_(o.init_blocks >= 0 ? o.init_blocks : o.provider->options().init_blocks),
      workers_per_node_(o.workers_per_node),
      prefetch_(o.prefetch_capacity),
      python_workers_(o.python_workers),
      pool_args_(o.pool_args),
      heartbeat_period_(o.heartbeat_period),
      heartbeat_threshold_(o.heartbeat_threshold) {
  if (!o.mpi_launcher.empty()) pool_args_.insert(pool_args_.end(), {"--mpi-launcher", o.mpi_launcher});
  if (o.workers_per_node < 0)
    throw ConfigurationError(fmt::format("HighThroughputExecutor workers_per_node must be >= 0, got {}", o.workers_per_node));
  if (o.prefetch_capacity < 0)
    throw ConfigurationError(fmt::format("HighThroughputExecutor prefetch_capacity must be >= 0, got {}", o.prefetch_capacity));
  if (o.encrypted && o.curve_public_key.empty() && o.curve_secret_key.empty()) {
    if (!zmq_has("curve"))
      throw ConfigurationError("HighThroughputExecutor encrypted=true, but this libzmq has no CURVE support "
                               "(set encrypted=false to run unencrypted)");
    std::tie(o.curve_public_key, o.curve_secret_key) = curve_keypair();
  }
  if (!o.curve_public_key.empty() && !o.curve_secret_key.empty()) public_key_ = o.curve_public_key;
}

void BlockManager::start(int port, const std::string& ipc_url) {
  {
    std::lock_guard lock(mutex_);
    port_ = port;
    ipc_url_ = ipc_url;
    std::error_code ec;
    if (!detail::create_private_directories(log_dir_, ec))
      throw Error(fmt::format("cannot create the run directory '{}': {}", log_dir_, ec.message()));
    if (!public_key_.empty()) {
      // One file per interchange (the port is unique on this host while it listens), so that
      // two programs sharing a run_dir and a label do not overwrite each other's key.
      key_file_ = (std::filesystem::path(log_dir_) / fmt::format("server-{}.key", port)).string();
      const int fd = ::open(key_file_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
      if (fd < 0)
        throw Error(fmt::format("cannot write the CurveZMQ key file '{}': {}", key_file_,
                                std::error_code(errno, std::generic_category()).message()));
      const std::string line = public_key_ + "\n";
      const bool ok = ::fchmod(fd, 0600) == 0 && ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
      ::close(fd);
      if (!ok) throw Error(fmt::format("cannot write the CurveZMQ key file '{}'", key_file_));
    }
  }
  scale_out(init_blocks_);
}

std::string BlockManager::pool_command(const std::string& block_id) const {
  std::lock_guard lock(mutex_);
  return pool_command_locked(block_id);
}

std::string BlockManager::pool_command_locked(const std::string& block_id) const {
  std::string host = address_;
  if (host == "*" || host == "0.0.0.0") host = "127.0.0.1";
  if (host == "::") host = "::1";
  if (host.find(':') != std::string::npos) host = "[" + host + "]";
  std::vector<std::string> parts{binary_, "--address", fmt::format("{}:{}", host, port_), "--block-id", block_id};
  if (!python_workers_) parts.push_back("--no-python");  // C++ tasks on pools are shell commands
  if (workers_per_node_ > 0) {
    parts.push_back("--workers");
    parts.push_back(std::to_string(workers_per_node_));
  }
  parts.insert(parts.end(), {"--prefetch", std::to_string(prefetch_), "--heartbeat-period",
                             fmt::format("{}", heartbeat_period_), "--heartbeat-threshold",
                             fmt::format("{}", heartbeat_threshold_), "--log-dir",
                             (std::filesystem::path(log_dir_) / fmt::format("block-{}", block_id)).string()});
  parts.insert(parts.end(), pool_args_.begin(), pool_args_.end());
  if (!key_file_.empty()) {
    parts.push_back("--curve-server-key");
    parts.push_back(key_file_);
  }
  // A pool that finds itself on this host (same kernel and network namespace) connects to the
  // same-host socket instead; any other uses --address as before (docs/htex.md, "Security").
  const std::string host_id = detail::same_host_id();
  if (!ipc_url_.empty() && !host_id.empty()) {
    parts.insert(parts.end(), {"--ipc", ipc_url_, "--host-id", host_id});
  }
  // Options and paths of plain characters stay unquoted, so the command reads well in logs.
  const auto plain = [](const std::string& p) {
    return !p.empty() && std::all_of(p.begin(), p.end(), [](unsigned char c) {
      return std::isalnum(c) || std::string_view("@%+=:,./-_").find(static_cast<char>(c)) != std::string_view::npos;
    });
  };
  std::string out;
  for (const auto& p : parts) {
    if (!out.empty()) out += ' ';
    out += plain(p) ? p : detail::shell_quote(p);
  }
  return out;
}

std::vector<std::string> BlockManager::scale_out(int count, bool record_failures) {
  std::vector<std::string> started;
  // Under the lock throughout, so that cancel_all() cannot miss a block started meanwhile.
  std::lock_guard lock(mutex_);
  if (cancelled_) throw Error(fmt::format("executor '{}' was shut down: no more blocks", label_));
  if (port_ == 0) throw ConfigurationError(fmt::format("executor '{}' is not started yet", label_));
  for (int i = 0; i < count; ++i) {
    const std::string block_id = std::to_string(next_block_++);
    const std::string command = pool_command_locked(block_id);
    Block block{block_id, {}, JobStatus{JobState::pending, {}, {}, log_path(block_id)}};
    try {
      // As Parsl's HTEX: one pool per node, so one task per node for the launcher.
      block.job_id = provider_->submit(command, 1, fmt::format("{}.block-{}", label_, block_id), block.status.log_path);
    } catch (const std::exception& e) {
      if (!record_failures) throw;
      block.status.state = JobState::failed;
      const std::string why = *e.what() ? e.what() : fmt::format("no reason given ({})", typeid(e).name());
      block.status.message = fmt::format("the provider could not submit it: {}", why);
    }
    report(block.block_id, block.job_id, block.status);
    blocks_.push_back(std::move(block));
    started.push_back(block_id);
  }
  return started;
}

void BlockManager::cancel(const std::vector<std::string>& block_ids) {
  std::vector<std::string> jobs;
  {
    std::lock_guard lock(mutex_);
    for (const auto& b : blocks_)
      if (!b.job_id.empty() && std::find(block_ids.begin(), block_ids.end(), b.block_id) != block_ids.end())
        jobs.push_back(b.job_id);
  }
  if (!jobs.empty()) provider_->cancel(jobs);
}

void BlockManager::cancel_all() {
  std::vector<std::string> jobs;
  {
    std::lock_guard lock(mutex_);
    if (cancelled_) return;
    cancelled_ = true;
    for (auto& b : blocks_) {
      if (b.job_id.empty()) continue;
      jobs.push_back(b.job_id);
      // As Parsl's shutdown (scale_in of every block): SCALED_IN from then on, whatever the
      // provider later says of the job.
      if (!is_terminal(b.status.state)) {
        b.status.state = JobState::scaled_in;
        b.status.message.clear();
        report(b.block_id, b.job_id, b.status);
      }
    }
  }
  if (!jobs.empty()) provider_->cancel(jobs);
}

std::vector<BlockStatus> BlockManager::blocks() {
  std::vector<std::string> jobs;
  {
    std::lock_guard lock(mutex_);
    for (const auto& b : blocks_)
      if (!b.job_id.empty() && !is_terminal(b.status.state)) jobs.push_back(b.job_id);
  }
  // Outside the lock: a batch provider's status command may take seconds.
  std::vector<JobStatus> states = jobs.empty() ? std::vector<JobStatus>{} : provider_->status(jobs);
  std::lock_guard lock(mutex_);
  std::vector<BlockStatus> out;
  for (auto& b : blocks_) {
    if (auto it = std::find(jobs.begin(), jobs.end(), b.job_id); it != jobs.end() && !is_terminal(b.status.state)) {
      const auto i = static_cast<std::size_t>(it - jobs.begin());
      if (i < states.size()) {
        std::string log = b.status.log_path;
        const JobState before = b.status.state;
        b.status = states[i];
        if (b.status.log_path.empty()) b.status.log_path = log;
        if (b.status.state != before) report(b.block_id, b.job_id, b.status);
      }
    }
    out.push_back(BlockStatus{b.block_id, b.job_id, b.status});
  }
  return out;
}

std::vector<BlockStatus> BlockManager::known() const {
  std::lock_guard lock(mutex_);
  std::vector<BlockStatus> out;
  for (const auto& b : blocks_) out.push_back(BlockStatus{b.block_id, b.job_id, b.status});
  return out;
}

void BlockManager::report(const std::string& block_id, const std::string& job_id, const JobStatus& status) const {
  if (!observers_ || !observers_->active()) return;
  observers_->block(
      BlockEvent{std::chrono::system_clock::now(), label_, block_id, job_id, to_string(status.state), status.message});
}

std::string BlockManager::log_path(const std::string& block_id) const {
  return (std::filesystem::path(log_dir_) / fmt::format("block-{}.log", block_id)).string();
}

std::string BlockManager::server_key_file() const {
  std::lock_guard lock(mutex_);
  return key_file_;
}

}  // namespace pervade::detail
