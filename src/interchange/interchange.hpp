#pragma once
// The interchange: a thread of the driver process that owns the ROUTER socket pools connect
// to, feeds the Dispatcher and hands results to a callback. Thread-safe public methods (any
// thread); the callbacks run on the interchange thread and must not block.
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "interchange/dispatcher.hpp"

namespace pervade::interchange {

struct CurveKeys {  // Z85-encoded CurveZMQ keys of the interchange (server)
  std::string public_key;
  std::string secret_key;
};

struct InterchangeConfig {
  std::string address = "127.0.0.1";  // interface to bind; "*" for all; IPv6 literals allowed
  int port = 0;                       // 0: the first free port in [port_min, port_max]
  int port_min = 54000;
  int port_max = 55000;
  DispatcherConfig dispatcher;
  std::optional<CurveKeys> curve;  // set: pools must present the server key (CurveZMQ)
  // Set: also listen, without CurveZMQ, on a Unix socket (ipc://) in a new directory of mode
  // 0700 made in this one, for pools on this host (docs/htex.md, "Security"). Removed by stop().
  std::string ipc_dir;
  // TCP connections open at once, at most (docs/htex.md, "Threat model"); 0: all the
  // descriptors this process may have (its soft RLIMIT_NOFILE, raised at start by
  // raise_fd_limit) but a reserve, ConnectionGuard::cap_for.
  std::size_t max_tcp_connections = 0;
};

class Interchange {
 public:
  using CompletedFn = std::function<void(std::vector<Completed>&&)>;
  using EventFn = std::function<void(const PoolEvent&)>;
  using UsageFn = std::function<void(std::vector<PoolUsage>&&)>;

  // Binds (throws pervade::Error naming the address if no port can be bound) and starts the thread.
  // on_usage (may be empty) gets pools' resource samples, before the results that follow them.
  Interchange(InterchangeConfig config, CompletedFn on_completed, EventFn on_event, UsageFn on_usage = {});
  ~Interchange();  // stop()

  int port() const;
  std::string url() const;  // what pools connect to: tcp://address:port
  std::string ipc_url() const;  // ipc://<path> of the same-host socket; empty without ipc_dir

  void add_function(const std::string& hash, std::string fn);
  void submit(std::vector<DispatchTask> tasks);
  void cancel(std::vector<std::uint64_t> task_ids);  // see Dispatcher::cancel
  bool hold(const std::string& pool_id, bool held);
  bool drain(const std::string& pool_id);
  std::vector<PoolInfo> pools();
  std::size_t outstanding();  // queued + in flight
  // Sends SHUTDOWN to every pool and joins the thread. Idempotent.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pervade::interchange
