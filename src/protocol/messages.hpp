#pragma once
// The typed messages of docs/protocol.md and their msgpack codec. Any thread; no state.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "pervade/remote.hpp"

namespace pervade::protocol {

constexpr int kProtocolVersion = 11;  // 2: CANCEL, status 3; 3: followers (after, status 4); 4: out-of-band buffers;
                                     // 5: FAILED; 6: out-of-band buffers of results;
                                     // 7: node facts in REGISTER, resource sampling (REGISTERED, USAGE)
                                     // 8: a task's resources (TASKS), its CPUs and accelerators (TASK)
                                     // 9: a task's MPI request (TASKS), its environment (TASK), status 5
                                     // 10: a pool's capacity and block end in REGISTER, running_time in TASKS
                                     // 11: each result's run time (RESULTS)

using Bytes = std::string;  // msgpack bin: opaque bytes
using pervade::SharedBuffer;  // an out-of-band buffer: a frame of its own on both links

// ---------------------------------------------------------------- pool -> interchange
// parsl_resource_specification's cores, memory (MB), gpus and running_time (seconds)
// (docs/htex.md, "Resources"); all zero: an ordinary task, which needs a worker only. A pool's
// capacity (REGISTER) uses the first three: what its largest node offers such tasks.
struct Resources {
  int cores = 0;
  std::uint64_t memory_mb = 0;
  int gpus = 0;
  double running_time = 0;  // > 0: the task declares it ends within this many seconds
  // Whether it asks a node for cores, memory or gpus (running_time alone does not).
  bool wants_node() const { return cores != 0 || memory_mb != 0 || gpus != 0; }
  bool empty() const { return !wants_node() && running_time == 0; }
  bool operator==(const Resources&) const = default;
};

struct Register {
  int protocol_version = kProtocolVersion;
  std::string pervade_version;
  std::string python_version;  // "3.11.7"; empty when the pool runs no Python workers
  std::string pool_id;
  std::string block_id;
  std::string hostname;
  int worker_count = 0;
  int prefetch = 0;
  int cpu_count = 0;               // the node's CPUs (for the monitoring node table)
  std::uint64_t total_memory = 0;  // the node's memory, bytes
  Resources capacity;              // what tasks asking for resources may use on its largest node
  // Walltime-aware blocks: seconds the pool runs tasks in all (its block's walltime less the
  // grace), and from now; 0: no end known.
  double walltime = 0;
  double ends_in = 0;
};
struct Heartbeat {};
struct TaskResult {
  std::uint64_t task_id = 0;
  int status = 0;  // kStatus*
  Bytes payload;
  // Out-of-band buffers of the pickled result: their sizes are in the message, their bytes are
  // the frames that follow RESULTS (docs/protocol.md).
  std::vector<SharedBuffer> buffers = {};
  // How long the task ran on the pool (worker or shell thread), whole microseconds on the wire;
  // none when it did not run there (refused, cancelled or answered before it started). The
  // interchange judges short tasks by it (DispatcherConfig::short_task_prefetch).
  std::optional<std::chrono::microseconds> run_time = std::nullopt;
};
struct Results {
  std::vector<TaskResult> results;
};
struct Drained {};
// The pool cannot run tasks (its workers cannot start) and is exiting; reason names the
// interpreter and quotes what it printed.
struct Failed {
  std::string reason;
};
// Resource samples of tasks running on Python workers (resource monitoring on: REGISTERED's
// resource_interval >= 0): the worker process and, in periodic samples, its descendants.
struct UsageSample {
  std::uint64_t task_id = 0;
  std::int64_t time_us = 0;  // wall clock, microseconds since the Unix epoch
  int pid = 0;
  int children = 0;
  double cpu_user = 0;  // seconds since the task started
  double cpu_system = 0;
  std::uint64_t rss = 0;  // bytes, now
  std::uint64_t vms = 0;
  std::uint64_t read_bytes = 0;  // since the task started
  std::uint64_t write_bytes = 0;
  std::uint64_t ctx_voluntary = 0;
  std::uint64_t ctx_involuntary = 0;
  bool first = false;  // the task's first sample (at its start)
  bool last = false;   // its last (at its end)
  bool operator==(const UsageSample&) const = default;
};
struct Usage {
  std::vector<UsageSample> samples;
};

// ---------------------------------------------------------------- interchange -> pool
struct Registered {
  double heartbeat_period = 30;
  double heartbeat_threshold = 120;
  double resource_interval = -1;  // < 0: no resource sampling; 0: first and last samples only
};
struct Refused {
  std::string reason;
};
// A follower's input that is still to come: input `input` is the result of task `task_id`,
// which runs (or ran last) on the same pool.
struct After {
  std::uint32_t input = 0;
  std::uint64_t task_id = 0;
  bool operator==(const After&) const = default;
};
// parsl_resource_specification's MPI keys (docs/mpi.md), checked and completed by the driver;
// num_nodes 0: not an MPI task. ranks_per_node 0: whole nodes (the task did not say).
struct MpiRequest {
  int num_nodes = 0;
  int ranks_per_node = 0;
  int num_ranks = 0;
  std::string launcher_options;
  bool empty() const { return num_nodes == 0; }
  bool operator==(const MpiRequest&) const = default;
};
struct Task {
  std::uint64_t task_id = 0;
  int kind = 0;  // kKind*
  Bytes fn_hash;
  std::optional<Bytes> fn;  // present the first time this pool sees fn_hash
  Bytes payload;
  std::vector<Bytes> inputs;  // an input named in `after` is empty here
  std::vector<After> after;   // empty: an ordinary task
  Resources resources;
  // Out-of-band buffers of the payload. On the wire the task carries their sizes, and the
  // bytes follow the TASKS message as frames of their own (docs/protocol.md).
  std::vector<SharedBuffer> buffers;
  MpiRequest mpi;
};
struct Tasks {
  std::vector<Task> tasks;
};
struct Drain {};
struct Shutdown {};
struct Cancel {
  std::vector<std::uint64_t> task_ids;
};

// ---------------------------------------------------------------- pool <-> worker
struct WorkerTask {
  std::uint64_t task_id = 0;
  Bytes fn_hash;
  std::optional<Bytes> fn;
  Bytes payload;
  std::vector<Bytes> inputs;
  std::vector<After> after;  // inputs to take from the worker's previous task (see docs/protocol.md)
  // The frame carries their sizes; the raw bytes follow the frame on the link. Decoded: sizes
  // only (data == nullptr).
  std::vector<SharedBuffer> buffers;
  // A task that asked for resources runs on these CPUs (when the pool pins: --cpu-affinity) and
  // sees only these accelerators; empty: the worker's own.
  std::vector<int> cpus;
  std::vector<std::string> accelerators;
  // Variables the task runs with (an MPI task's nodes and launch prefixes, docs/mpi.md); the
  // worker restores its own afterwards.
  std::vector<std::pair<std::string, std::string>> env;
};
struct WorkerReady {
  int rank = 0;
  int pid = 0;
};
struct WorkerResult {
  std::uint64_t task_id = 0;
  int status = 0;
  Bytes payload;
  // The frame carries their sizes; the raw bytes follow the frame on the link. Decoded: sizes
  // only (data == nullptr).
  std::vector<SharedBuffer> buffers = {};
};
struct WorkerExit {};

constexpr int kKindPython = 0;
constexpr int kKindShell = 1;
constexpr int kStatusOk = 0;
constexpr int kStatusException = 1;
constexpr int kStatusWorkerLost = 2;
constexpr int kStatusCancelled = 3;
constexpr int kStatusNotStarted = 4;  // a follower whose input did not reach it; the driver launches it again
// The task can never run on this pool (or, from the interchange, on any pool):
// payload "<key>[,<key>...]\n<why>" (InvalidResourceSpecification; unsatisfiable_payload()).
constexpr int kStatusInvalid = 5;

using PoolMessage = std::variant<Register, Heartbeat, Results, Drained, Failed, Usage>;
using InterchangeMessage = std::variant<Registered, Refused, Tasks, Heartbeat, Drain, Shutdown, Cancel>;
using ToWorker = std::variant<WorkerTask, WorkerExit>;
using FromWorker = std::variant<WorkerReady, WorkerResult>;

// Encoders return the msgpack bytes of one message (one ZeroMQ frame / one local-link frame
// body, without the length prefix).
Bytes encode(const PoolMessage& m);
Bytes encode(const InterchangeMessage& m);
Bytes encode(const ToWorker& m);
Bytes encode(const FromWorker& m);

// The frames that follow a message's first one: the out-of-band buffers of its tasks (TASKS) or
// results (RESULTS), one after the other, in order (empty for other messages).
std::vector<SharedBuffer> out_of_band_frames(const InterchangeMessage& m);
std::vector<SharedBuffer> out_of_band_frames(const PoolMessage& m);

// Decoders never throw: malformed or unknown input gives std::nullopt (with the reason in
// *error when given).
// A one-frame message (one without out-of-band buffers).
std::optional<PoolMessage> decode_pool_message(const char* data, std::size_t size, std::string* error = nullptr);
// frames[0] is the message, the rest the out-of-band buffers of its results, exactly as many and
// as long as they announce; the results then share them.
std::optional<PoolMessage> decode_pool_message(const std::vector<SharedBuffer>& frames, std::string* error = nullptr);
// frames[0] is the message, the rest its out-of-band buffers (out_of_band_frames): they must be
// exactly as many, and as long, as its tasks announce; the tasks then share them.
std::optional<InterchangeMessage> decode_interchange_message(const std::vector<SharedBuffer>& frames,
                                                             std::string* error = nullptr);
// A one-frame message (one without out-of-band buffers).
std::optional<InterchangeMessage> decode_interchange_message(const char* data, std::size_t size,
                                                             std::string* error = nullptr);
std::optional<ToWorker> decode_to_worker(const char* data, std::size_t size, std::string* error = nullptr);
std::optional<FromWorker> decode_from_worker(const char* data, std::size_t size, std::string* error = nullptr);

// Status 5's payload: the resource-spec keys of `request` that exceed `largest` (the biggest
// capacity on offer; its running_time is the longest time a block runs, 0: no end),
// comma-separated, then a newline and `text` (docs/protocol.md).
Bytes unsatisfiable_payload(const Resources& request, const Resources& largest, const std::string& text);

// Shell task payloads (kind 1).
struct ShellPayload {
  std::string command;
  std::string stdout_path;
  bool stdout_append = true;
  std::string stderr_path;
  bool stderr_append = true;
  double walltime = 0;
};
// A shell command that ran past its walltime comes back with kStatusException and this text,
// followed by the walltime ("exceeded its walltime of 2 s").
inline constexpr std::string_view kShellWalltimeExceeded = "exceeded its walltime of ";
Bytes encode_shell_payload(const ShellPayload& p);
std::optional<ShellPayload> decode_shell_payload(const char* data, std::size_t size);
Bytes encode_exit_code(int code);
std::optional<int> decode_exit_code(const char* data, std::size_t size);

// Local-link framing: 4-byte little-endian length, then the body.
Bytes frame(const Bytes& body);
// Appends incoming bytes and extracts complete frames. A frame longer than max_frame is an
// error (the peer is broken): extract() then returns false.
class FrameReader {
 public:
  explicit FrameReader(std::size_t max_frame = std::size_t{1} << 31) : max_frame_(max_frame) {}
  void feed(const char* data, std::size_t size) { buffer_.append(data, size); }
  // Moves the next complete frame body into *out; false if none is complete yet.
  // Sets *broken if the length prefix exceeds max_frame.
  bool next(Bytes* out, bool* broken);
  // Moves up to `size` buffered bytes that are not a frame (the raw bytes of out-of-band
  // buffers that follow one) to dst; returns how many.
  std::size_t take_raw(char* dst, std::size_t size);

 private:
  std::size_t max_frame_;
  Bytes buffer_;
  std::size_t offset_ = 0;
};

}  // namespace pervade::protocol
