// The msgpack codec of docs/protocol.md.
//
// Encoding: one msgpack array per message, the integer type first, then the fields in the
// order of the doc. Bytes are msgpack bin, text is str, an absent optional is nil.
//
// Decoding is strict and never throws: the whole input must be exactly one msgpack value,
// every field must have its documented msgpack type (bin only for bytes, str only for text,
// integers in range), every array its documented length, and each decoder accepts only the
// message types of its own direction. Field numbers in error messages are array indexes: the
// type is element 0, so the first field is "field 1".
//
// msgpack-c preallocates arrays and maps from the element count in their header, before it
// has seen the elements; unpack limits derived from the input size keep a forged count from
// turning a few bytes of input into a huge allocation.
#ifndef MSGPACK_NO_BOOST
#define MSGPACK_NO_BOOST  // only the core msgpack API is used; no Boost adaptors
#endif
#include "protocol/messages.hpp"

#include <msgpack.hpp>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <utility>

namespace pervade::protocol {
namespace {

// ------------------------------------------------------------------------------ type numbers
// interchange <-> pool
constexpr int kRegister = 1;
constexpr int kPoolHeartbeat = 2;
constexpr int kResults = 3;
constexpr int kDrained = 4;
constexpr int kFailed = 5;
constexpr int kUsage = 6;
constexpr int kRegistered = 101;
constexpr int kRefused = 102;
constexpr int kTasks = 103;
constexpr int kInterchangeHeartbeat = 104;
constexpr int kDrain = 105;
constexpr int kShutdown = 106;
constexpr int kCancel = 107;
// pool <-> worker
constexpr int kWorkerTask = 1;
constexpr int kWorkerReady = 2;
constexpr int kWorkerResult = 3;
constexpr int kWorkerExit = 4;

template <class... F>
struct Overloaded : F... {
  using F::operator()...;
};
template <class... F>
Overloaded(F...) -> Overloaded<F...>;

// ------------------------------------------------------------------------------ encoding
// A msgpack output stream writing straight into the Bytes that encode() returns.
struct StringStream {
  Bytes out;
  void write(const char* data, std::size_t size) { out.append(data, size); }
};
using Packer = msgpack::packer<StringStream>;

void pack_bin(Packer& pk, const Bytes& b) {
  if (b.size() > 0xffffffffu) throw std::length_error("pervade protocol: bin field longer than 4 GiB");
  pk.pack_bin(static_cast<std::uint32_t>(b.size()));
  pk.pack_bin_body(b.data(), static_cast<std::uint32_t>(b.size()));
}
void pack_str(Packer& pk, const std::string& s) {
  if (s.size() > 0xffffffffu) throw std::length_error("pervade protocol: str field longer than 4 GiB");
  pk.pack_str(static_cast<std::uint32_t>(s.size()));
  pk.pack_str_body(s.data(), static_cast<std::uint32_t>(s.size()));
}
void pack_opt_bin(Packer& pk, const std::optional<Bytes>& b) {
  if (b)
    pack_bin(pk, *b);
  else
    pk.pack_nil();
}
void pack_array_header(Packer& pk, std::size_t n) {
  if (n > 0xffffffffu) throw std::length_error("pervade protocol: array longer than 2^32-1 elements");
  pk.pack_array(static_cast<std::uint32_t>(n));
}
// Out-of-band buffers: only their sizes are in the message.
void pack_buffer_sizes(Packer& pk, const std::vector<SharedBuffer>& v) {
  pack_array_header(pk, v.size());
  for (const auto& b : v) pk.pack_uint64(b.size);
}
void pack_bins(Packer& pk, const std::vector<Bytes>& v) {
  pack_array_header(pk, v.size());
  for (const auto& b : v) pack_bin(pk, b);
}
void pack_mpi(Packer& pk, const MpiRequest& r) {
  if (r.empty()) {
    pk.pack_nil();
    return;
  }
  pk.pack_array(4);
  pk.pack_int(r.num_nodes);
  pk.pack_int(r.ranks_per_node);
  pk.pack_int(r.num_ranks);
  pack_str(pk, r.launcher_options);
}

void pack_placement(Packer& pk, const WorkerTask& t) {
  if (t.cpus.empty() && t.accelerators.empty() && t.env.empty()) {
    pk.pack_nil();
    return;
  }
  pk.pack_array(3);
  pk.pack_array(static_cast<std::uint32_t>(t.cpus.size()));
  for (int c : t.cpus) pk.pack_int(c);
  pk.pack_array(static_cast<std::uint32_t>(t.accelerators.size()));
  for (const auto& a : t.accelerators) pack_str(pk, a);
  pk.pack_array(static_cast<std::uint32_t>(t.env.size()));
  for (const auto& [name, value] : t.env) {
    pk.pack_array(2);
    pack_str(pk, name);
    pack_str(pk, value);
  }
}

void pack_after(Packer& pk, const std::vector<After>& after) {
  pack_array_header(pk, after.size());
  for (const auto& a : after) {
    pk.pack_array(2);
    pk.pack_uint32(a.input);
    pk.pack_uint64(a.task_id);
  }
}

// Always a float 64. msgpack-c's pack_double writes integral values as msgpack integers (and
// -0.0 as 0), but the doc's float fields are floats on the wire.
void pack_float64(StringStream& s, double d) {
  std::uint64_t bits;
  std::memcpy(&bits, &d, sizeof bits);
  char buf[9];
  buf[0] = static_cast<char>(0xcb);
  for (int i = 0; i < 8; ++i) buf[1 + i] = static_cast<char>((bits >> (8 * (7 - i))) & 0xff);
  s.write(buf, sizeof buf);
}
// nil for an ordinary task; else [cores, memory_mb, gpus, running_time].
void pack_resources(Packer& pk, StringStream& s, const Resources& r) {
  if (r.empty()) {
    pk.pack_nil();
    return;
  }
  pk.pack_array(4);
  pk.pack_int(r.cores);
  pk.pack_uint64(r.memory_mb);
  pk.pack_int(r.gpus);
  pack_float64(s, r.running_time);
}

void pack_empty(Packer& pk, int type) {
  pk.pack_array(1);
  pk.pack_int(type);
}

std::size_t task_size_hint(const Bytes& fn_hash, const std::optional<Bytes>& fn, const Bytes& payload,
                           const std::vector<Bytes>& inputs) {
  std::size_t n = 32 + fn_hash.size() + (fn ? fn->size() : 0) + payload.size();
  for (const auto& b : inputs) n += 5 + b.size();
  return n;
}

// ------------------------------------------------------------------------------ decoding
using msgpack::object;
namespace mtype = msgpack::type;

struct DecodeError {
  std::string why;
};
[[noreturn]] void fail(std::string why) { throw DecodeError{std::move(why)}; }

// Where a field sits, for error messages; formatted only when a field is wrong.
struct Where {
  const char* msg;             // "REGISTER"
  const char* item = nullptr;  // "task" for an element of a list of records, or nullptr
  std::size_t index = 0;       // which element
};
std::string describe(const Where& w, std::size_t field) {
  std::string s = "field " + std::to_string(field) + " of " + w.msg;
  if (w.item) s += std::string(" ") + w.item + " " + std::to_string(w.index);
  return s;
}
[[noreturn]] void wrong_type(const Where& w, std::size_t field, const char* expected) {
  fail(describe(w, field) + ": expected " + expected);
}

const object& at(const msgpack::object_array& a, std::size_t i) { return a.ptr[i]; }

std::string get_str(const object& o, const Where& w, std::size_t f) {
  if (o.type != mtype::STR) wrong_type(w, f, "str");
  return std::string(o.via.str.ptr, o.via.str.size);
}
Bytes get_bin(const object& o, const Where& w, std::size_t f) {
  if (o.type != mtype::BIN) wrong_type(w, f, "bin");
  return Bytes(o.via.bin.ptr, o.via.bin.size);
}
std::optional<Bytes> get_opt_bin(const object& o, const Where& w, std::size_t f) {
  if (o.type == mtype::NIL) return std::nullopt;
  if (o.type != mtype::BIN) wrong_type(w, f, "bin or nil");
  return Bytes(o.via.bin.ptr, o.via.bin.size);
}
int get_int(const object& o, const Where& w, std::size_t f) {
  if (o.type == mtype::POSITIVE_INTEGER) {
    if (o.via.u64 > static_cast<std::uint64_t>(INT_MAX)) wrong_type(w, f, "int in 32-bit range");
    return static_cast<int>(o.via.u64);
  }
  if (o.type == mtype::NEGATIVE_INTEGER) {
    if (o.via.i64 < static_cast<std::int64_t>(INT_MIN)) wrong_type(w, f, "int in 32-bit range");
    return static_cast<int>(o.via.i64);
  }
  wrong_type(w, f, "int");
}
std::uint64_t get_uint(const object& o, const Where& w, std::size_t f) {
  if (o.type != mtype::POSITIVE_INTEGER) wrong_type(w, f, "uint");
  return o.via.u64;
}
std::optional<std::uint64_t> get_opt_uint(const object& o, const Where& w, std::size_t f) {
  if (o.type == mtype::NIL) return std::nullopt;
  if (o.type != mtype::POSITIVE_INTEGER) wrong_type(w, f, "uint or nil");
  return o.via.u64;
}
// A float field also takes an integer: 30 and 30.0 mean the same number of seconds.
double get_float(const object& o, const Where& w, std::size_t f) {
  switch (o.type) {
    case mtype::FLOAT32:
    case mtype::FLOAT64:
      return o.via.f64;
    case mtype::POSITIVE_INTEGER:
      return static_cast<double>(o.via.u64);
    case mtype::NEGATIVE_INTEGER:
      return static_cast<double>(o.via.i64);
    default:
      wrong_type(w, f, "float");
  }
}
bool get_bool(const object& o, const Where& w, std::size_t f) {
  if (o.type != mtype::BOOLEAN) wrong_type(w, f, "bool");
  return o.via.boolean;
}
const msgpack::object_array& get_array(const object& o, const Where& w, std::size_t f) {
  if (o.type != mtype::ARRAY) wrong_type(w, f, "array");
  return o.via.array;
}
// One record of a list field (a task of TASKS, a result of RESULTS): an array of n.
const msgpack::object_array& get_record(const object& o, const Where& w, std::size_t n) {
  if (o.type != mtype::ARRAY || o.via.array.size != n)
    fail(std::string(w.msg) + " " + w.item + " " + std::to_string(w.index) + ": expected array of " +
         std::to_string(n));
  return o.via.array;
}
std::vector<After> get_after(const object& o, const Where& w, std::size_t f) {
  const auto& a = get_array(o, w, f);
  std::vector<After> out;
  out.reserve(a.size);
  for (std::size_t i = 0; i < a.size; ++i) {
    const auto& pair = get_record(at(a, i), Where{w.msg, "after", i}, 2);
    const std::uint64_t input = get_uint(at(pair, 0), w, f);
    if (input > 0xffffffffu) fail(describe(w, f) + ": input index out of range");
    out.push_back(After{static_cast<std::uint32_t>(input), get_uint(at(pair, 1), w, f)});
  }
  return out;
}
// Sizes of out-of-band buffers; the data is attached from the frames that follow (or the
// bytes that follow the frame on the worker link).
std::vector<SharedBuffer> get_buffer_sizes(const object& o, const Where& w, std::size_t f) {
  const auto& a = get_array(o, w, f);
  std::vector<SharedBuffer> out(a.size);
  for (std::size_t i = 0; i < a.size; ++i) {
    if (at(a, i).type != mtype::POSITIVE_INTEGER)
      fail(describe(w, f) + ", element " + std::to_string(i) + ": expected uint");
    out[i].size = at(a, i).via.u64;
  }
  return out;
}
// nil (an ordinary task) or [cores, memory_mb, gpus, running_time].
Resources get_resources(const object& o, const Where& w, std::size_t f) {
  if (o.type == mtype::NIL) return {};
  const auto& a = get_array(o, w, f);
  if (a.size != 4) fail(describe(w, f) + ": expected [cores, memory_mb, gpus, running_time]");
  Resources r;
  r.cores = get_int(at(a, 0), w, f);
  r.memory_mb = get_uint(at(a, 1), w, f);
  r.gpus = get_int(at(a, 2), w, f);
  r.running_time = get_float(at(a, 3), w, f);
  if (r.cores < 0 || r.gpus < 0) fail(describe(w, f) + ": negative cores or gpus");
  if (!(r.running_time >= 0) || !std::isfinite(r.running_time)) fail(describe(w, f) + ": running_time must be >= 0");
  return r;
}
// nil (an ordinary task) or [num_nodes, ranks_per_node, num_ranks, launcher_options].
MpiRequest get_mpi(const object& o, const Where& w, std::size_t f) {
  if (o.type == mtype::NIL) return {};
  const auto& a = get_array(o, w, f);
  if (a.size != 4) fail(describe(w, f) + ": expected [num_nodes, ranks_per_node, num_ranks, launcher_options]");
  MpiRequest r;
  r.num_nodes = get_int(at(a, 0), w, f);
  r.ranks_per_node = get_int(at(a, 1), w, f);
  r.num_ranks = get_int(at(a, 2), w, f);
  r.launcher_options = get_str(at(a, 3), w, f);
  if (r.num_nodes < 1 || r.ranks_per_node < 0 || r.num_ranks < 0)
    fail(describe(w, f) + ": num_nodes must be >= 1, ranks_per_node and num_ranks >= 0");
  return r;
}
// nil (the worker's own) or [[cpu...], [accelerator id...], [[name, value]...]].
void get_placement(const object& o, const Where& w, std::size_t f, WorkerTask* t) {
  if (o.type == mtype::NIL) return;
  const auto& a = get_array(o, w, f);
  if (a.size != 3) fail(describe(w, f) + ": expected [cpus, accelerators, environment]");
  const auto& c = get_array(at(a, 0), w, f);
  for (std::size_t i = 0; i < c.size; ++i) {
    t->cpus.push_back(get_int(at(c, i), w, f));
    if (t->cpus.back() < 0) fail(describe(w, f) + ": negative CPU number");
  }
  const auto& g = get_array(at(a, 1), w, f);
  for (std::size_t i = 0; i < g.size; ++i) t->accelerators.push_back(get_str(at(g, i), w, f));
  const auto& e = get_array(at(a, 2), w, f);
  for (std::size_t i = 0; i < e.size; ++i) {
    const auto& pair = get_record(at(e, i), Where{w.msg, "variable", i}, 2);
    t->env.emplace_back(get_str(at(pair, 0), w, f), get_str(at(pair, 1), w, f));
  }
}
std::vector<Bytes> get_bins(const object& o, const Where& w, std::size_t f) {
  const auto& a = get_array(o, w, f);
  std::vector<Bytes> out;
  out.reserve(a.size);
  for (std::size_t i = 0; i < a.size; ++i) {
    if (at(a, i).type != mtype::BIN)
      fail(describe(w, f) + ", element " + std::to_string(i) + ": expected bin");
    out.emplace_back(at(a, i).via.bin.ptr, at(a, i).via.bin.size);
  }
  return out;
}

// Reference str/bin/ext bodies in the input instead of copying them into the zone: the
// input outlives the object tree, and the fields are copied once, into the result.
bool reference_all(mtype::object_type, std::size_t, void*) { return true; }

// Exactly one msgpack value filling [data, data + size), in this thread's reusable zone. A fresh
// zone per message (what msgpack::object_handle does) cost a malloc and free of 8 KB for every
// message: about a tenth of the interchange thread's time when thousands of pools send it small
// messages (BENCHMARKS.md, "One interchange, many pools: pools of one and ten workers").
// Decoders copy what they keep before the next value is unpacked; unpacking while another
// Unpacked of the thread lives would overwrite it, so it aborts.
class Unpacked {
 public:
  Unpacked(const char* data, std::size_t size) {
    if (size == 0 || data == nullptr) fail("empty input");
    if (std::exchange(in_use(), true)) std::abort();  // a broken invariant: see above
    // Every array element and map entry takes at least one byte of input, and no message nests
    // deeper than 4; these limits bound what a forged header can make msgpack-c allocate.
    const msgpack::unpack_limit limit(/*array=*/size, /*map=*/size / 2, /*str=*/size, /*bin=*/size, /*ext=*/size,
                                      /*depth=*/16);
    std::size_t offset = 0;
    try {
      object_ = msgpack::unpack(zone(), data, size, offset, reference_all, nullptr, limit);
    } catch (const msgpack::insufficient_bytes&) {
      release();
      fail("truncated msgpack");
    } catch (const std::bad_alloc&) {
      release();
      throw;
    } catch (const std::exception& e) {
      release();
      fail(std::string("bad msgpack: ") + e.what());
    }
    if (offset != size) {
      release();
      fail(std::to_string(size - offset) + " trailing bytes after the message");
    }
  }
  ~Unpacked() { release(); }
  Unpacked(const Unpacked&) = delete;
  Unpacked& operator=(const Unpacked&) = delete;
  const object& get() const { return object_; }

 private:
  static msgpack::zone& zone() {
    thread_local msgpack::zone z;
    return z;
  }
  static bool& in_use() {
    thread_local bool used = false;
    return used;
  }
  static void release() {
    zone().clear();  // keeps its first chunk for the next message
    in_use() = false;
  }
  object object_;
};

// The message array: [type, fields...]. Returns the type number.
std::int64_t message_type(const object& o) {
  if (o.type != mtype::ARRAY) fail("not an array");
  if (o.via.array.size == 0) fail("empty array");
  const object& t = o.via.array.ptr[0];
  if (t.type == mtype::POSITIVE_INTEGER)
    return t.via.u64 > static_cast<std::uint64_t>(INT64_MAX) ? INT64_MAX : static_cast<std::int64_t>(t.via.u64);
  if (t.type == mtype::NEGATIVE_INTEGER) return t.via.i64;
  fail("message type: expected int");
}

// The fields of a top-level message, after checking its arity.
const msgpack::object_array& fields(const object& o, const char* name, std::size_t n_fields) {
  const auto& a = o.via.array;
  if (a.size != n_fields + 1)
    fail(std::string(name) + ": expected " + std::to_string(n_fields) + (n_fields == 1 ? " field" : " fields") +
         ", got " + std::to_string(a.size - 1));
  return a;
}

const char* link1_name(std::int64_t t) {
  switch (t) {
    case kRegister: return "REGISTER";
    case kPoolHeartbeat: return "HEARTBEAT";
    case kResults: return "RESULTS";
    case kDrained: return "DRAINED";
    case kFailed: return "FAILED";
    case kUsage: return "USAGE";
    case kRegistered: return "REGISTERED";
    case kRefused: return "REFUSED";
    case kTasks: return "TASKS";
    case kInterchangeHeartbeat: return "HEARTBEAT";
    case kDrain: return "DRAIN";
    case kShutdown: return "SHUTDOWN";
    case kCancel: return "CANCEL";
    default: return nullptr;
  }
}
const char* link2_name(std::int64_t t) {
  switch (t) {
    case kWorkerTask: return "TASK";
    case kWorkerReady: return "READY";
    case kWorkerResult: return "RESULT";
    case kWorkerExit: return "EXIT";
    default: return nullptr;
  }
}
[[noreturn]] void unexpected_type(std::int64_t t, const char* name, const char* direction) {
  if (name == nullptr) fail("unknown type " + std::to_string(t));
  fail("type " + std::to_string(t) + " (" + name + ") is not a " + direction + " message");
}

// Runs a decoder body, turning every failure into nullopt plus a reason.
template <class T, class Body>
std::optional<T> guarded(std::string* error, Body&& body) noexcept {
  try {
    return body();
  } catch (const DecodeError& e) {
    if (error) *error = e.why;
  } catch (const std::bad_alloc&) {
    if (error) *error = "out of memory";
  } catch (const std::exception& e) {
    if (error) *error = std::string("decode failed: ") + e.what();
  } catch (...) {
    if (error) *error = "decode failed";
  }
  return std::nullopt;
}

Register decode_register(const object& o) {
  const auto& a = o.via.array;
  const Where w{"REGISTER"};
  Register r;
  if (a.size < 2) fail("REGISTER: expected 13 fields, got " + std::to_string(a.size - 1));
  r.protocol_version = get_int(at(a, 1), w, 1);
  if (r.protocol_version != kProtocolVersion) {
    // Another protocol version may lay REGISTER out differently. Keep whatever still reads
    // as version 1 would, so the interchange can REFUSE the pool naming both versions
    // instead of dropping it as garbage.
    auto str_or_empty = [&](std::size_t i) {
      return i < a.size && at(a, i).type == mtype::STR ? std::string(at(a, i).via.str.ptr, at(a, i).via.str.size)
                                                       : std::string();
    };
    r.pervade_version = str_or_empty(2);
    r.python_version = str_or_empty(3);
    r.pool_id = str_or_empty(4);
    r.block_id = str_or_empty(5);
    r.hostname = str_or_empty(6);
    return r;
  }
  fields(o, "REGISTER", 13);
  r.pervade_version = get_str(at(a, 2), w, 2);
  r.python_version = get_str(at(a, 3), w, 3);
  r.pool_id = get_str(at(a, 4), w, 4);
  r.block_id = get_str(at(a, 5), w, 5);
  r.hostname = get_str(at(a, 6), w, 6);
  r.worker_count = get_int(at(a, 7), w, 7);
  r.prefetch = get_int(at(a, 8), w, 8);
  r.cpu_count = get_int(at(a, 9), w, 9);
  r.total_memory = get_uint(at(a, 10), w, 10);
  r.capacity = get_resources(at(a, 11), w, 11);
  r.walltime = get_float(at(a, 12), w, 12);
  r.ends_in = get_float(at(a, 13), w, 13);
  return r;
}

Usage decode_usage(const object& o) {
  const auto& a = fields(o, "USAGE", 1);
  const auto& list = get_array(at(a, 1), Where{"USAGE"}, 1);
  Usage u;
  u.samples.reserve(list.size);
  for (std::size_t i = 0; i < list.size; ++i) {
    const Where w{"USAGE", "sample", i};
    const auto& item = get_record(at(list, i), w, 13);
    UsageSample s;
    s.task_id = get_uint(at(item, 0), w, 0);
    s.time_us = static_cast<std::int64_t>(get_uint(at(item, 1), w, 1));
    s.pid = get_int(at(item, 2), w, 2);
    s.children = get_int(at(item, 3), w, 3);
    s.cpu_user = get_float(at(item, 4), w, 4);
    s.cpu_system = get_float(at(item, 5), w, 5);
    s.rss = get_uint(at(item, 6), w, 6);
    s.vms = get_uint(at(item, 7), w, 7);
    s.read_bytes = get_uint(at(item, 8), w, 8);
    s.write_bytes = get_uint(at(item, 9), w, 9);
    s.ctx_voluntary = get_uint(at(item, 10), w, 10);
    s.ctx_involuntary = get_uint(at(item, 11), w, 11);
    const int flags = get_int(at(item, 12), w, 12);
    s.first = flags & 1;
    s.last = flags & 2;
    u.samples.push_back(s);
  }
  return u;
}

Results decode_results(const object& o) {
  const auto& a = fields(o, "RESULTS", 1);
  const auto& list = get_array(at(a, 1), Where{"RESULTS"}, 1);
  Results r;
  r.results.reserve(list.size);
  for (std::size_t i = 0; i < list.size; ++i) {
    const Where w{"RESULTS", "result", i};
    const auto& item = get_record(at(list, i), w, 5);
    TaskResult t;
    t.task_id = get_uint(at(item, 0), w, 0);
    t.status = get_int(at(item, 1), w, 1);
    t.payload = get_bin(at(item, 2), w, 2);
    t.buffers = get_buffer_sizes(at(item, 3), w, 3);
    if (auto us = get_opt_uint(at(item, 4), w, 4))  // (clamped: past 2^63 µs is as long)
      t.run_time = std::chrono::microseconds(static_cast<std::int64_t>(std::min<std::uint64_t>(*us, INT64_MAX)));
    r.results.push_back(std::move(t));
  }
  return r;
}

Tasks decode_tasks(const object& o) {
  const auto& a = fields(o, "TASKS", 1);
  const auto& list = get_array(at(a, 1), Where{"TASKS"}, 1);
  Tasks r;
  r.tasks.reserve(list.size);
  for (std::size_t i = 0; i < list.size; ++i) {
    const Where w{"TASKS", "task", i};
    const auto& item = get_record(at(list, i), w, 10);
    Task t;
    t.task_id = get_uint(at(item, 0), w, 0);
    t.kind = get_int(at(item, 1), w, 1);
    t.fn_hash = get_bin(at(item, 2), w, 2);
    t.fn = get_opt_bin(at(item, 3), w, 3);
    t.payload = get_bin(at(item, 4), w, 4);
    t.inputs = get_bins(at(item, 5), w, 5);
    t.after = get_after(at(item, 6), w, 6);
    t.buffers = get_buffer_sizes(at(item, 7), w, 7);
    t.resources = get_resources(at(item, 8), w, 8);
    t.mpi = get_mpi(at(item, 9), w, 9);
    r.tasks.push_back(std::move(t));
  }
  return r;
}

// One frame of the interchange -> pool link (throws DecodeError).
InterchangeMessage decode_interchange_frame(const char* data, std::size_t size) {
  const Unpacked handle(data, size);
  const object& o = handle.get();
  const std::int64_t type = message_type(o);
  switch (type) {
    case kRegistered: {
      const auto& a = fields(o, "REGISTERED", 3);
      const Where w{"REGISTERED"};
      Registered r;
      r.heartbeat_period = get_float(at(a, 1), w, 1);
      r.heartbeat_threshold = get_float(at(a, 2), w, 2);
      r.resource_interval = get_float(at(a, 3), w, 3);
      return r;
    }
    case kRefused: {
      const auto& a = fields(o, "REFUSED", 1);
      return Refused{get_str(at(a, 1), Where{"REFUSED"}, 1)};
    }
    case kTasks:
      return decode_tasks(o);
    case kInterchangeHeartbeat:
      fields(o, "HEARTBEAT", 0);
      return Heartbeat{};
    case kDrain:
      fields(o, "DRAIN", 0);
      return Drain{};
    case kShutdown:
      fields(o, "SHUTDOWN", 0);
      return Shutdown{};
    case kCancel: {
      const auto& a = fields(o, "CANCEL", 1);
      const auto& list = get_array(at(a, 1), Where{"CANCEL"}, 1);
      Cancel c;
      c.task_ids.reserve(list.size);
      for (std::size_t i = 0; i < list.size; ++i)
        c.task_ids.push_back(get_uint(at(list, i), Where{"CANCEL", "task_id", i}, 0));
      return c;
    }
    default:
      unexpected_type(type, link1_name(type), "interchange -> pool");
  }
}

}  // namespace

Bytes unsatisfiable_payload(const Resources& request, const Resources& largest, const std::string& text) {
  std::string keys;
  auto add = [&](bool beyond, const char* key) {
    if (!beyond) return;
    if (!keys.empty()) keys += ',';
    keys += key;
  };
  add(request.cores > largest.cores, "cores");
  add(request.memory_mb > largest.memory_mb, "memory");
  add(request.gpus > largest.gpus, "gpus");
  add(largest.running_time > 0 && request.running_time > largest.running_time, "running_time");
  return keys + '\n' + text;
}

// ================================================================================ encoders
Bytes encode(const PoolMessage& m) {
  StringStream s;
  Packer pk(s);
  std::visit(Overloaded{
                 [&](const Register& r) {
                   pk.pack_array(14);
                   pk.pack_int(kRegister);
                   pk.pack_int(r.protocol_version);
                   pack_str(pk, r.pervade_version);
                   pack_str(pk, r.python_version);
                   pack_str(pk, r.pool_id);
                   pack_str(pk, r.block_id);
                   pack_str(pk, r.hostname);
                   pk.pack_int(r.worker_count);
                   pk.pack_int(r.prefetch);
                   pk.pack_int(r.cpu_count);
                   pk.pack_uint64(r.total_memory);
                   pack_resources(pk, s, r.capacity);
                   pack_float64(s, r.walltime);
                   pack_float64(s, r.ends_in);
                 },
                 [&](const Heartbeat&) { pack_empty(pk, kPoolHeartbeat); },
                 [&](const Results& r) {
                   std::size_t hint = 16;
                   for (const auto& t : r.results) hint += 32 + t.payload.size();
                   s.out.reserve(hint);
                   pk.pack_array(2);
                   pk.pack_int(kResults);
                   pack_array_header(pk, r.results.size());
                   for (const auto& t : r.results) {
                     pk.pack_array(5);
                     pk.pack_uint64(t.task_id);
                     pk.pack_int(t.status);
                     pack_bin(pk, t.payload);
                     pack_buffer_sizes(pk, t.buffers);
                     if (t.run_time)
                       pk.pack_uint64(static_cast<std::uint64_t>(std::max<std::int64_t>(0, t.run_time->count())));
                     else
                       pk.pack_nil();
                   }
                 },
                 [&](const Drained&) { pack_empty(pk, kDrained); },
                 [&](const Failed& f) {
                   pk.pack_array(2);
                   pk.pack_int(kFailed);
                   pack_str(pk, f.reason);
                 },
                 [&](const Usage& u) {
                   pk.pack_array(2);
                   pk.pack_int(kUsage);
                   pack_array_header(pk, u.samples.size());
                   for (const auto& x : u.samples) {
                     pk.pack_array(13);
                     pk.pack_uint64(x.task_id);
                     pk.pack_uint64(static_cast<std::uint64_t>(std::max<std::int64_t>(0, x.time_us)));
                     pk.pack_int(x.pid);
                     pk.pack_int(x.children);
                     pack_float64(s, x.cpu_user);
                     pack_float64(s, x.cpu_system);
                     pk.pack_uint64(x.rss);
                     pk.pack_uint64(x.vms);
                     pk.pack_uint64(x.read_bytes);
                     pk.pack_uint64(x.write_bytes);
                     pk.pack_uint64(x.ctx_voluntary);
                     pk.pack_uint64(x.ctx_involuntary);
                     pk.pack_int((x.first ? 1 : 0) | (x.last ? 2 : 0));
                   }
                 },
             },
             m);
  return std::move(s.out);
}

Bytes encode(const InterchangeMessage& m) {
  StringStream s;
  Packer pk(s);
  std::visit(Overloaded{
                 [&](const Registered& r) {
                   pk.pack_array(4);
                   pk.pack_int(kRegistered);
                   pack_float64(s, r.heartbeat_period);
                   pack_float64(s, r.heartbeat_threshold);
                   pack_float64(s, r.resource_interval);
                 },
                 [&](const Refused& r) {
                   pk.pack_array(2);
                   pk.pack_int(kRefused);
                   pack_str(pk, r.reason);
                 },
                 [&](const Tasks& r) {
                   std::size_t hint = 16;
                   for (const auto& t : r.tasks) hint += task_size_hint(t.fn_hash, t.fn, t.payload, t.inputs);
                   s.out.reserve(hint);
                   pk.pack_array(2);
                   pk.pack_int(kTasks);
                   pack_array_header(pk, r.tasks.size());
                   for (const auto& t : r.tasks) {
                     pk.pack_array(10);
                     pk.pack_uint64(t.task_id);
                     pk.pack_int(t.kind);
                     pack_bin(pk, t.fn_hash);
                     pack_opt_bin(pk, t.fn);
                     pack_bin(pk, t.payload);
                     pack_bins(pk, t.inputs);
                     pack_after(pk, t.after);
                     pack_buffer_sizes(pk, t.buffers);
                     pack_resources(pk, s, t.resources);
                     pack_mpi(pk, t.mpi);
                   }
                 },
                 [&](const Heartbeat&) { pack_empty(pk, kInterchangeHeartbeat); },
                 [&](const Drain&) { pack_empty(pk, kDrain); },
                 [&](const Shutdown&) { pack_empty(pk, kShutdown); },
                 [&](const Cancel& c) {
                   pk.pack_array(2);
                   pk.pack_int(kCancel);
                   pack_array_header(pk, c.task_ids.size());
                   for (std::uint64_t id : c.task_ids) pk.pack_uint64(id);
                 },
             },
             m);
  return std::move(s.out);
}

Bytes encode(const ToWorker& m) {
  StringStream s;
  Packer pk(s);
  std::visit(Overloaded{
                 [&](const WorkerTask& t) {
                   s.out.reserve(task_size_hint(t.fn_hash, t.fn, t.payload, t.inputs));
                   pk.pack_array(9);
                   pk.pack_int(kWorkerTask);
                   pk.pack_uint64(t.task_id);
                   pack_bin(pk, t.fn_hash);
                   pack_opt_bin(pk, t.fn);
                   pack_bin(pk, t.payload);
                   pack_bins(pk, t.inputs);
                   pack_after(pk, t.after);
                   pack_buffer_sizes(pk, t.buffers);
                   pack_placement(pk, t);
                 },
                 [&](const WorkerExit&) { pack_empty(pk, kWorkerExit); },
             },
             m);
  return std::move(s.out);
}

Bytes encode(const FromWorker& m) {
  StringStream s;
  Packer pk(s);
  std::visit(Overloaded{
                 [&](const WorkerReady& r) {
                   pk.pack_array(3);
                   pk.pack_int(kWorkerReady);
                   pk.pack_int(r.rank);
                   pk.pack_int(r.pid);
                 },
                 [&](const WorkerResult& r) {
                   s.out.reserve(24 + r.payload.size());
                   pk.pack_array(5);
                   pk.pack_int(kWorkerResult);
                   pk.pack_uint64(r.task_id);
                   pk.pack_int(r.status);
                   pack_bin(pk, r.payload);
                   pack_buffer_sizes(pk, r.buffers);
                 },
             },
             m);
  return std::move(s.out);
}

// ================================================================================ decoders
namespace {

// One frame of the pool -> interchange link (throws DecodeError).
PoolMessage decode_pool_frame(const char* data, std::size_t size) {
  const Unpacked handle(data, size);
  const object& o = handle.get();
  const std::int64_t type = message_type(o);
  switch (type) {
    case kRegister:
      return decode_register(o);
    case kPoolHeartbeat:
      fields(o, "HEARTBEAT", 0);
      return Heartbeat{};
    case kResults:
      return decode_results(o);
    case kDrained:
      fields(o, "DRAINED", 0);
      return Drained{};
    case kFailed: {
      const auto& a = fields(o, "FAILED", 1);
      return Failed{get_str(at(a, 1), Where{"FAILED"}, 1)};
    }
    case kUsage:
      return decode_usage(o);
    default:
      unexpected_type(type, link1_name(type), "pool -> interchange");
  }
}

// Gives each item's announced buffers (sizes only so far) the frames after the first, in order,
// each exactly as long as announced (throws DecodeError).
template <class Item>
void attach_frames(std::vector<Item>& items, const std::vector<SharedBuffer>& frames, const char* msg,
                   const char* item) {
  std::size_t next = 1;
  for (std::size_t i = 0; i < items.size(); ++i) {
    for (SharedBuffer& b : items[i].buffers) {
      if (next >= frames.size())
        fail(std::string(msg) + " " + item + " " + std::to_string(i) +
             " announces more out-of-band buffers than the " + std::to_string(frames.size() - 1) +
             " frames that follow");
      if (frames[next].size != b.size)
        fail(std::string(msg) + " " + item + " " + std::to_string(i) + ": out-of-band frame " +
             std::to_string(next) + " has " + std::to_string(frames[next].size) + " bytes, the " + item +
             " announces " + std::to_string(b.size));
      b = frames[next++];
    }
  }
  if (next != frames.size())
    fail(std::to_string(frames.size() - next) + " frames more than the message's out-of-band buffers");
}

template <class Item>
void append_buffers(const std::vector<Item>& items, std::vector<SharedBuffer>* out) {
  for (const auto& t : items) out->insert(out->end(), t.buffers.begin(), t.buffers.end());
}

}  // namespace

std::optional<PoolMessage> decode_pool_message(const char* data, std::size_t size, std::string* error) {
  return decode_pool_message(std::vector<SharedBuffer>{SharedBuffer{nullptr, data, size}}, error);
}

std::optional<PoolMessage> decode_pool_message(const std::vector<SharedBuffer>& frames, std::string* error) {
  return guarded<PoolMessage>(error, [&]() -> PoolMessage {
    if (frames.empty()) fail("no frame");
    PoolMessage m = decode_pool_frame(frames[0].data, frames[0].size);
    auto* results = std::get_if<Results>(&m);
    if (results)
      attach_frames(results->results, frames, "RESULTS", "result");
    else if (frames.size() > 1)
      fail(std::to_string(frames.size() - 1) + " frames more than the message's out-of-band buffers");
    return m;
  });
}

std::vector<SharedBuffer> out_of_band_frames(const PoolMessage& m) {
  std::vector<SharedBuffer> out;
  if (const auto* results = std::get_if<Results>(&m)) append_buffers(results->results, &out);
  return out;
}

std::vector<SharedBuffer> out_of_band_frames(const InterchangeMessage& m) {
  std::vector<SharedBuffer> out;
  if (const auto* tasks = std::get_if<Tasks>(&m)) append_buffers(tasks->tasks, &out);
  return out;
}

std::optional<InterchangeMessage> decode_interchange_message(const char* data, std::size_t size, std::string* error) {
  return decode_interchange_message(std::vector<SharedBuffer>{SharedBuffer{nullptr, data, size}}, error);
}

std::optional<InterchangeMessage> decode_interchange_message(const std::vector<SharedBuffer>& frames,
                                                             std::string* error) {
  return guarded<InterchangeMessage>(error, [&]() -> InterchangeMessage {
    if (frames.empty()) fail("no frame");
    InterchangeMessage m = decode_interchange_frame(frames[0].data, frames[0].size);
    if (auto* tasks = std::get_if<Tasks>(&m))
      attach_frames(tasks->tasks, frames, "TASKS", "task");
    else if (frames.size() > 1)
      fail(std::to_string(frames.size() - 1) + " frames more than the message's out-of-band buffers");
    return m;
  });
}

std::optional<ToWorker> decode_to_worker(const char* data, std::size_t size, std::string* error) {
  return guarded<ToWorker>(error, [&]() -> ToWorker {
    const Unpacked handle(data, size);
    const object& o = handle.get();
    const std::int64_t type = message_type(o);
    switch (type) {
      case kWorkerTask: {
        const auto& a = fields(o, "TASK", 8);
        const Where w{"TASK"};
        WorkerTask t;
        t.task_id = get_uint(at(a, 1), w, 1);
        t.fn_hash = get_bin(at(a, 2), w, 2);
        t.fn = get_opt_bin(at(a, 3), w, 3);
        t.payload = get_bin(at(a, 4), w, 4);
        t.inputs = get_bins(at(a, 5), w, 5);
        t.after = get_after(at(a, 6), w, 6);
        t.buffers = get_buffer_sizes(at(a, 7), w, 7);
        get_placement(at(a, 8), w, 8, &t);
        return t;
      }
      case kWorkerExit:
        fields(o, "EXIT", 0);
        return WorkerExit{};
      default:
        unexpected_type(type, link2_name(type), "pool -> worker");
    }
  });
}

std::optional<FromWorker> decode_from_worker(const char* data, std::size_t size, std::string* error) {
  return guarded<FromWorker>(error, [&]() -> FromWorker {
    const Unpacked handle(data, size);
    const object& o = handle.get();
    const std::int64_t type = message_type(o);
    switch (type) {
      case kWorkerReady: {
        const auto& a = fields(o, "READY", 2);
        const Where w{"READY"};
        WorkerReady r;
        r.rank = get_int(at(a, 1), w, 1);
        r.pid = get_int(at(a, 2), w, 2);
        return r;
      }
      case kWorkerResult: {
        const auto& a = fields(o, "RESULT", 4);
        const Where w{"RESULT"};
        WorkerResult r;
        r.task_id = get_uint(at(a, 1), w, 1);
        r.status = get_int(at(a, 2), w, 2);
        r.payload = get_bin(at(a, 3), w, 3);
        r.buffers = get_buffer_sizes(at(a, 4), w, 4);
        return r;
      }
      default:
        unexpected_type(type, link2_name(type), "worker -> pool");
    }
  });
}

// ================================================================================ shell payloads
Bytes encode_shell_payload(const ShellPayload& p) {
  StringStream s;
  Packer pk(s);
  pk.pack_array(6);
  pack_str(pk, p.command);
  pack_str(pk, p.stdout_path);
  pk.pack(p.stdout_append);
  pack_str(pk, p.stderr_path);
  pk.pack(p.stderr_append);
  pack_float64(s, p.walltime);
  return std::move(s.out);
}

std::optional<ShellPayload> decode_shell_payload(const char* data, std::size_t size) {
  return guarded<ShellPayload>(nullptr, [&]() -> ShellPayload {
    const Unpacked handle(data, size);
    const object& o = handle.get();
    const Where w{"shell payload"};
    if (o.type != mtype::ARRAY) fail("not an array");
    const auto& a = o.via.array;
    if (a.size != 6) fail("shell payload: expected 6 elements");
    ShellPayload p;
    p.command = get_str(at(a, 0), w, 0);
    p.stdout_path = get_str(at(a, 1), w, 1);
    p.stdout_append = get_bool(at(a, 2), w, 2);
    p.stderr_path = get_str(at(a, 3), w, 3);
    p.stderr_append = get_bool(at(a, 4), w, 4);
    p.walltime = get_float(at(a, 5), w, 5);
    return p;
  });
}

Bytes encode_exit_code(int code) {
  StringStream s;
  Packer pk(s);
  pk.pack_int(code);
  return std::move(s.out);
}

std::optional<int> decode_exit_code(const char* data, std::size_t size) {
  return guarded<int>(nullptr, [&]() -> int {
    const Unpacked handle(data, size);
    return get_int(handle.get(), Where{"exit code"}, 0);
  });
}

// ================================================================================ framing
Bytes frame(const Bytes& body) {
  if (body.size() > 0xffffffffu) throw std::length_error("pervade protocol: frame longer than 4 GiB");
  const auto n = static_cast<std::uint32_t>(body.size());
  Bytes out;
  out.reserve(4 + body.size());
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  out += body;
  return out;
}

std::size_t FrameReader::take_raw(char* dst, std::size_t size) {
  const std::size_t n = std::min(size, buffer_.size() - offset_);
  if (n == 0) return 0;
  std::memcpy(dst, buffer_.data() + offset_, n);
  offset_ += n;
  if (offset_ == buffer_.size()) {
    buffer_.clear();
    offset_ = 0;
  }
  return n;
}

bool FrameReader::next(Bytes* out, bool* broken) {
  if (broken) *broken = false;
  const std::size_t avail = buffer_.size() - offset_;
  if (avail >= 4) {
    const auto* p = reinterpret_cast<const unsigned char*>(buffer_.data() + offset_);
    const std::size_t len = std::size_t{p[0]} | std::size_t{p[1]} << 8 | std::size_t{p[2]} << 16 |
                            std::size_t{p[3]} << 24;
    if (len > max_frame_) {
      if (broken) *broken = true;  // stays broken: offset_ does not move past the bad prefix
      return false;
    }
    const std::size_t need = 4 + len;
    if (avail >= need) {
      out->assign(buffer_, offset_ + 4, len);
      offset_ += need;
      if (offset_ == buffer_.size()) {
        buffer_.clear();
        offset_ = 0;
      } else if (offset_ > buffer_.size() / 2) {
        buffer_.erase(0, offset_);
        offset_ = 0;
      }
      return true;
    }
  }
  // Incomplete: drop the consumed prefix so the buffer holds only the partial frame.
  if (offset_ > 0) {
    buffer_.erase(0, offset_);
    offset_ = 0;
  }
  return false;
}

}  // namespace pervade::protocol
