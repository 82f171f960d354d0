#pragma once
// Tasks that run in other processes (HighThroughputExecutor pools): what a body hands over to
// be sent, and what comes back. Payloads produced by Python stay opaque bytes here.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "pervade/errors.hpp"

namespace pervade {

// Immutable bytes shared without copying: `owner` keeps [data, data + size) alive (the driver's
// copy of a big Python buffer, or the ZeroMQ frame it arrived in on a pool). Any thread.
//   auto bytes = std::make_shared<std::string>(1 << 20, 'x');
//   SharedBuffer b{bytes, bytes->data(), bytes->size()};
struct SharedBuffer {
  std::shared_ptr<const void> owner;
  const char* data = nullptr;
  std::size_t size = 0;
  std::string_view view() const { return {data, size}; }
};

// A task as it goes on the wire (docs/protocol.md, TASKS).
struct RemoteTask {
  int kind = 0;  // 0: Python call, 1: shell command
  std::string fn_hash;
  std::string fn;  // the serialized function (sent to each pool once)
  std::string payload;
  std::vector<std::string> inputs;  // serialized values of the dependencies
  int priority = 0;
  // Big arguments pickled out of band (pickle protocol 5 buffers), in the payload's order:
  // they travel as separate frames, never copied into a message (shared by the task's tries).
  std::vector<SharedBuffer> buffers;
  // parsl_resource_specification's MPI keys (docs/mpi.md), completed by the front end;
  // num_nodes 0: the call had none. ranks_per_node 0: whole nodes.
  int num_nodes = 0;
  int ranks_per_node = 0;
  int num_ranks = 0;
  std::string launcher_options;
  bool has_resource_spec = false;  // the call had a non-empty parsl_resource_specification
  // parsl_resource_specification's cores, memory (MB), gpus and running_time (seconds); all
  // zero: a task that needs a worker only (docs/htex.md, "Resources").
  int cores = 0;
  std::uint64_t memory_mb = 0;
  int gpus = 0;
  double running_time = 0;
};

// A result that arrived from a pool, still serialized: forwarded as is to remote dependents,
// decoded only where a value is needed (a Python future).
struct RemoteBytes {
  std::string bytes;
  // A big result's out-of-band buffers (pickle protocol 5), in the ZeroMQ frames they arrived
  // in; `bytes` alone cannot be unpickled then. Empty for most results.
  std::vector<SharedBuffer> buffers = {};
};

// A front end may take over a big result's buffers as they arrive: the Python binding moves
// each into the bytes object its value will be, releasing the frame's pages as it copies, so a
// 1 GB result costs the driver 1 GB, not 2. Called by executors on their own thread, before
// the result is posted, while they hold its only reference; null: buffers stay as they came.
using ResultBufferHook = void (*)(std::vector<SharedBuffer>& buffers);
void set_result_buffer_hook(ResultBufferHook hook);
ResultBufferHook result_buffer_hook();

// The task raised on the worker; payload is the serialized (exception, traceback text).
class RemoteTaskError : public Error {
 public:
  explicit RemoteTaskError(std::string payload) : Error("task raised on a remote worker"), payload_(std::move(payload)) {}
  const std::string& payload() const { return payload_; }

 private:
  std::string payload_;
};

// The worker process running the task died (the pool saw it go).
class WorkerLost : public Error {
 public:
  using Error::Error;
};

// The task's parsl_resource_specification cannot be met by its executor (a key it does not take,
// a missing spec in MPI mode, more nodes than a block has). Python: InvalidResourceSpecification.
class InvalidResourceSpecification : public Error {
 public:
  InvalidResourceSpecification(std::string key, const std::string& message)
      : Error(message), key_(std::move(key)) {}
  const std::string& key() const { return key_; }  // empty: the spec as a whole

 private:
  std::string key_;
};

// The pool holding the task stopped answering (heartbeat threshold) or went away.
class ManagerLost : public Error {
 public:
  using Error::Error;
};

// The executor cannot run tasks any more (its blocks keep failing, docs/scaling.md): every
// outstanding and later task fails with this. Python: BadStateException (an ExecutorError).
class ExecutorFailed : public Error {
 public:
  ExecutorFailed(std::string label, std::string reason)
      : Error("Executor " + label + " failed due to: " + reason), label_(std::move(label)), reason_(std::move(reason)) {}
  const std::string& label() const { return label_; }
  const std::string& reason() const { return reason_; }

 private:
  std::string label_;
  std::string reason_;
};

}  // namespace pervade
