// Tests for the wire protocol codec (src/protocol/messages.cpp, docs/protocol.md).
//
// Malformed messages are built with a small msgpack writer of this file's own (Val), written
// from the msgpack spec rather than with msgpack-c, so the tests also check the codec's bytes
// against an independent encoder.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <random>
#include <string>
#include <variant>
#include <vector>

#include "protocol/messages.hpp"

namespace {

using namespace pervade::protocol;
using namespace std::string_literals;

// ---------------------------------------------------------------- an independent msgpack writer
struct Val {
  enum Kind { Nil, Bool, Int, UInt, Float, Str, Bin, Arr, Map, Raw } kind = Nil;
  bool b = false;
  std::int64_t i = 0;
  std::uint64_t u = 0;
  double f = 0;
  std::string s;  // Str, Bin, Raw
  std::vector<Val> items;

  static Val nil() { return {}; }
  static Val boolean(bool v) { Val x; x.kind = Bool; x.b = v; return x; }
  static Val integer(std::int64_t v) { Val x; x.kind = Int; x.i = v; return x; }
  static Val uinteger(std::uint64_t v) { Val x; x.kind = UInt; x.u = v; return x; }
  static Val flt(double v) { Val x; x.kind = Float; x.f = v; return x; }
  static Val str(std::string v) { Val x; x.kind = Str; x.s = std::move(v); return x; }
  static Val bin(std::string v) { Val x; x.kind = Bin; x.s = std::move(v); return x; }
  static Val arr(std::vector<Val> v) { Val x; x.kind = Arr; x.items = std::move(v); return x; }
  static Val map1(Val k, Val v) { Val x; x.kind = Map; x.items = {std::move(k), std::move(v)}; return x; }
  static Val raw(std::string bytes) { Val x; x.kind = Raw; x.s = std::move(bytes); return x; }
};
Val I(std::int64_t v) { return Val::integer(v); }
Val U(std::uint64_t v) { return Val::uinteger(v); }
Val S(std::string v) { return Val::str(std::move(v)); }
Val B(std::string v) { return Val::bin(std::move(v)); }
Val A(std::vector<Val> v) { return Val::arr(std::move(v)); }

void put_be(std::string& out, std::uint64_t v, int n) {
  for (int k = n - 1; k >= 0; --k) out.push_back(static_cast<char>((v >> (8 * k)) & 0xff));
}
void write(std::string& out, const Val& v) {
  switch (v.kind) {
    case Val::Nil: out.push_back('\xc0'); break;
    case Val::Bool: out.push_back(v.b ? '\xc3' : '\xc2'); break;
    case Val::UInt:
    case Val::Int: {
      if (v.kind == Val::Int && v.i < 0) {
        if (v.i >= -32) out.push_back(static_cast<char>(v.i));
        else if (v.i >= -128) { out.push_back('\xd0'); put_be(out, static_cast<std::uint64_t>(v.i), 1); }
        else if (v.i >= -32768) { out.push_back('\xd1'); put_be(out, static_cast<std::uint64_t>(v.i), 2); }
        else if (v.i >= INT32_MIN) { out.push_back('\xd2'); put_be(out, static_cast<std::uint64_t>(v.i), 4); }
        else { out.push_back('\xd3'); put_be(out, static_cast<std::uint64_t>(v.i), 8); }
        break;
      }
      const std::uint64_t u = v.kind == Val::Int ? static_cast<std::uint64_t>(v.i) : v.u;
      if (u < 128) out.push_back(static_cast<char>(u));
      else if (u <= 0xff) { out.push_back('\xcc'); put_be(out, u, 1); }
      else if (u <= 0xffff) { out.push_back('\xcd'); put_be(out, u, 2); }
      else if (u <= 0xffffffff) { out.push_back('\xce'); put_be(out, u, 4); }
      else { out.push_back('\xcf'); put_be(out, u, 8); }
      break;
    }
    case Val::Float: {
      std::uint64_t bits;
      std::memcpy(&bits, &v.f, 8);
      out.push_back('\xcb');
      put_be(out, bits, 8);
      break;
    }
    case Val::Str: {
      const auto n = v.s.size();
      if (n < 32) out.push_back(static_cast<char>(0xa0 | n));
      else if (n <= 0xff) { out.push_back('\xd9'); put_be(out, n, 1); }
      else if (n <= 0xffff) { out.push_back('\xda'); put_be(out, n, 2); }
      else { out.push_back('\xdb'); put_be(out, n, 4); }
      out += v.s;
      break;
    }
    case Val::Bin: {
      const auto n = v.s.size();
      if (n <= 0xff) { out.push_back('\xc4'); put_be(out, n, 1); }
      else if (n <= 0xffff) { out.push_back('\xc5'); put_be(out, n, 2); }
      else { out.push_back('\xc6'); put_be(out, n, 4); }
      out += v.s;
      break;
    }
    case Val::Arr: {
      const auto n = v.items.size();
      if (n < 16) out.push_back(static_cast<char>(0x90 | n));
      else if (n <= 0xffff) { out.push_back('\xdc'); put_be(out, n, 2); }
      else { out.push_back('\xdd'); put_be(out, n, 4); }
      for (const auto& x : v.items) write(out, x);
      break;
    }
    case Val::Map:
      out.push_back('\x81');
      write(out, v.items[0]);
      write(out, v.items[1]);
      break;
    case Val::Raw: out += v.s; break;
  }
}
std::string pack(const Val& v) {
  std::string out;
  write(out, v);
  return out;
}

// ---------------------------------------------------------------- helpers
const std::string kBinary = "\x00\x01\xff\x00\x80zero\x00"s;  // embedded zeros and high bytes

std::string big_bytes(std::size_t n) {
  std::string s(n, '\0');
  std::mt19937 rng(7);
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

template <class M>
M only(const std::optional<M>& m) {
  EXPECT_TRUE(m.has_value());
  return *m;
}

std::optional<PoolMessage> dpool(const std::string& b, std::string* e = nullptr) {
  return decode_pool_message(b.data(), b.size(), e);
}
std::optional<InterchangeMessage> dic(const std::string& b, std::string* e = nullptr) {
  return decode_interchange_message(b.data(), b.size(), e);
}
std::optional<ToWorker> dto(const std::string& b, std::string* e = nullptr) {
  return decode_to_worker(b.data(), b.size(), e);
}
std::optional<FromWorker> dfrom(const std::string& b, std::string* e = nullptr) {
  return decode_from_worker(b.data(), b.size(), e);
}

// The error of decoding `b` with `decoder`, which must fail.
template <class Decoder>
std::string reject(Decoder decoder, const std::string& b) {
  std::string error;
  auto m = decoder(b, &error);
  EXPECT_FALSE(m.has_value()) << "decoded although malformed";
  EXPECT_FALSE(error.empty());
  return error;
}

Register sample_register() {
  Register r;
  r.pervade_version = "0.1.0";
  r.python_version = "3.11.7";
  r.pool_id = "pool-7f3a";
  r.block_id = "block-0";
  r.hostname = "node12.cluster.example.org";
  r.worker_count = 48;
  r.prefetch = 3;
  r.cpu_count = 64;
  r.total_memory = std::uint64_t{1} << 37;
  r.capacity = Resources{64, 120000, 4};
  r.walltime = 3600;
  r.ends_in = 3599.5;
  return r;
}

SharedBuffer shared(std::string bytes) {
  auto owner = std::make_shared<std::string>(std::move(bytes));
  return SharedBuffer{owner, owner->data(), owner->size()};
}

Task sample_task(std::uint64_t id, bool with_fn) {
  Task t;
  t.task_id = id;
  t.kind = kKindPython;
  t.fn_hash = "\xda\x39\xa3\xee\x5e\x6b\x4b\x0d\x32\x55\xbf\xef\x95\x60\x18\x90\xaf\xd8\x07\x09"s;
  if (with_fn) t.fn = kBinary + "fn";
  t.payload = kBinary + "payload";
  t.inputs = {kBinary, "", "\x00"s};
  if (!with_fn) t.after = {{1, id + 1}, {0, UINT64_MAX}};  // a follower (input 1 comes from task id+1)
  return t;
}

// All the valid messages of every codec, encoded: the seed corpus of the mutation fuzz.
std::vector<std::string> corpus() {
  std::vector<std::string> c;
  c.push_back(encode(PoolMessage{sample_register()}));
  c.push_back(encode(PoolMessage{Heartbeat{}}));
  c.push_back(encode(PoolMessage{Results{{{1, kStatusOk, kBinary, {}, std::chrono::microseconds(1500)},
                                           {UINT64_MAX, kStatusException, ""}}}}));
  c.push_back(encode(PoolMessage{Results{}}));
  c.push_back(encode(PoolMessage{Drained{}}));
  c.push_back(encode(InterchangeMessage{Registered{0.5, 2.25}}));
  c.push_back(encode(InterchangeMessage{Refused{"protocol version 2 != 1"}}));
  c.push_back(encode(InterchangeMessage{Tasks{{sample_task(1, true), sample_task(2, false)}}}));
  c.push_back(encode(InterchangeMessage{Heartbeat{}}));
  c.push_back(encode(InterchangeMessage{Drain{}}));
  c.push_back(encode(InterchangeMessage{Shutdown{}}));
  c.push_back(encode(InterchangeMessage{Cancel{{7, UINT64_MAX}}}));
  c.push_back(encode(ToWorker{WorkerTask{9, "hash", "fn"s, "payload", {"a", "b"}}}));
  c.push_back(encode(ToWorker{WorkerTask{10, "hash", std::nullopt, "payload", {"a", ""}, {{1, 9}}}}));
  c.push_back(encode(ToWorker{WorkerTask{11, "hash", "fn"s, "payload", {}, {}, {shared("xyz"), shared("")}}}));
  c.push_back(encode(ToWorker{WorkerExit{}}));
  c.push_back(encode(FromWorker{WorkerReady{3, 4242}}));
  c.push_back(encode(FromWorker{WorkerResult{9, kStatusWorkerLost, "killed by signal 9"}}));
  c.push_back(encode_shell_payload({"echo hi", "/tmp/o", true, "/tmp/e", false, 1.5}));
  c.push_back(encode_exit_code(-9));
  return c;
}

// Decodes `b` with every decoder: each either succeeds or fails with a reason; a message that
// decodes re-encodes to bytes that decode to the same message.
void decode_everything(const std::string& b) {
  // Re-encoding a decoded message and decoding that gives the same bytes again.
  auto check = [&](auto decoder) {
    std::string error;
    const auto m = decoder(b, &error);
    if (!m) {
      EXPECT_FALSE(error.empty());
      return;
    }
    const std::string again = encode(*m);
    const auto m2 = decoder(again, nullptr);
    ASSERT_TRUE(m2.has_value());
    EXPECT_EQ(encode(*m2), again);
  };
  check(dpool);
  check(dic);
  check(dto);
  check(dfrom);
  if (auto p = decode_shell_payload(b.data(), b.size())) {
    const auto again = encode_shell_payload(*p);
    const auto p2 = decode_shell_payload(again.data(), again.size());
    ASSERT_TRUE(p2.has_value());
    EXPECT_EQ(encode_shell_payload(*p2), again);
  }
  if (auto c = decode_exit_code(b.data(), b.size())) {
    const auto again = encode_exit_code(*c);
    EXPECT_EQ(decode_exit_code(again.data(), again.size()), c);
  }
}

// ================================================================ round trips
TEST(ProtocolTest, UsageRoundTrip) {
  UsageSample a{1, 2, 3, 0, 0.5, 0.125, 10, 20, 30, 40, 50, 60, false, true};
  UsageSample b{UINT64_MAX, 1700000000123456, 99, 7, 123.0, 4.5, UINT64_MAX, 1, 0, 0, 0, 0, true, true};
  const auto out = std::get<Usage>(only(dpool(encode(PoolMessage{Usage{{a, b}}}))));
  ASSERT_EQ(out.samples.size(), 2u);
  EXPECT_EQ(out.samples[0], a);
  EXPECT_EQ(out.samples[1], b);
}

TEST(ProtocolTest, RegisterRoundTrip) {
  const Register in = sample_register();
  const auto out = std::get<Register>(only(dpool(encode(PoolMessage{in}))));
  EXPECT_EQ(out.protocol_version, kProtocolVersion);
  EXPECT_EQ(out.pervade_version, in.pervade_version);
  EXPECT_EQ(out.python_version, in.python_version);
  EXPECT_EQ(out.pool_id, in.pool_id);
  EXPECT_EQ(out.block_id, in.block_id);
  EXPECT_EQ(out.hostname, in.hostname);
  EXPECT_EQ(out.worker_count, 48);
  EXPECT_EQ(out.prefetch, 3);
  EXPECT_EQ(out.cpu_count, 64);
  EXPECT_EQ(out.total_memory, std::uint64_t{1} << 37);
  EXPECT_EQ(out.capacity, (Resources{64, 120000, 4}));
  EXPECT_EQ(out.walltime, 3600);
  EXPECT_EQ(out.ends_in, 3599.5);

  Register no_python = in;  // a pool without Python workers; extreme ints
  no_python.python_version = "";
  no_python.worker_count = INT32_MAX;
  no_python.prefetch = INT32_MIN;
  const auto out2 = std::get<Register>(only(dpool(encode(PoolMessage{no_python}))));
  EXPECT_EQ(out2.python_version, "");
  EXPECT_EQ(out2.worker_count, INT32_MAX);
  EXPECT_EQ(out2.prefetch, INT32_MIN);
}

TEST(ProtocolTest, CancelRoundTripsAndRejectsNonIntegerIds) {
  const auto c = std::get<Cancel>(only(dic(encode(InterchangeMessage{Cancel{{0, 7, UINT64_MAX}}}))));
  EXPECT_EQ(c.task_ids, (std::vector<std::uint64_t>{0, 7, UINT64_MAX}));
  EXPECT_TRUE(std::get<Cancel>(only(dic(encode(InterchangeMessage{Cancel{}})))).task_ids.empty());
  std::string error;
  EXPECT_FALSE(decode_interchange_message("\x92\x6b\x91\xa1x", 5, &error));  // [107, ["x"]]
  EXPECT_NE(error.find("CANCEL"), std::string::npos) << error;
}

TEST(ProtocolTest, EmptyMessagesRoundTrip) {
  EXPECT_TRUE(std::holds_alternative<Heartbeat>(only(dpool(encode(PoolMessage{Heartbeat{}})))));
  EXPECT_TRUE(std::holds_alternative<Drained>(only(dpool(encode(PoolMessage{Drained{}})))));
  EXPECT_TRUE(std::holds_alternative<Heartbeat>(only(dic(encode(InterchangeMessage{Heartbeat{}})))));
  EXPECT_TRUE(std::holds_alternative<Drain>(only(dic(encode(InterchangeMessage{Drain{}})))));
  EXPECT_TRUE(std::holds_alternative<Shutdown>(only(dic(encode(InterchangeMessage{Shutdown{}})))));
  EXPECT_TRUE(std::holds_alternative<WorkerExit>(only(dto(encode(ToWorker{WorkerExit{}})))));
}

TEST(ProtocolTest, FailedRoundTripsWithItsReason) {
  const std::string reason = "interpreter '/no/python': No such file or directory\n\xc3\xa9";
  const auto out = std::get<Failed>(only(dpool(encode(PoolMessage{Failed{reason}}))));
  EXPECT_EQ(out.reason, reason);
  EXPECT_EQ(encode(PoolMessage{Failed{"x"}}), "\x92\x05\xa1x"s);  // [5, "x"]
  std::string error;
  EXPECT_FALSE(decode_pool_message("\x91\x05", 2, &error));  // FAILED without its reason
  EXPECT_NE(error.find("FAILED"), std::string::npos) << error;
}

TEST(ProtocolTest, ResultsRoundTrip) {
  Results in;
  in.results.push_back({0, kStatusOk, kBinary});
  in.results.push_back({UINT64_MAX, kStatusException, ""});
  in.results.push_back({1234567890123ull, kStatusWorkerLost, "worker exited with status 137"});
  in.results.push_back({5, -1, std::string(300, '\0')});
  // Run times (version 11): none (the task did not run), 0, a no-op's, an hour's.
  in.results[0].run_time = std::chrono::microseconds(0);
  in.results[1].run_time = std::chrono::microseconds(7);
  in.results[2].run_time = std::chrono::hours(1);
  const auto out = std::get<Results>(only(dpool(encode(PoolMessage{in}))));
  ASSERT_EQ(out.results.size(), 4u);
  for (std::size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(out.results[i].task_id, in.results[i].task_id);
    EXPECT_EQ(out.results[i].status, in.results[i].status);
    EXPECT_EQ(out.results[i].payload, in.results[i].payload);
    EXPECT_EQ(out.results[i].run_time, in.results[i].run_time) << i;
  }
  EXPECT_TRUE(std::get<Results>(only(dpool(encode(PoolMessage{Results{}})))).results.empty());
}

TEST(ProtocolTest, RegisteredAndRefusedRoundTrip) {
  const auto r = std::get<Registered>(only(dic(encode(InterchangeMessage{Registered{0.125, 1e9}}))));
  EXPECT_EQ(r.heartbeat_period, 0.125);
  EXPECT_EQ(r.heartbeat_threshold, 1e9);
  const std::string reason = "python 3.12 on the pool, 3.11 on the driver \xe2\x9c\x97";
  EXPECT_EQ(std::get<Refused>(only(dic(encode(InterchangeMessage{Refused{reason}})))).reason, reason);
  EXPECT_EQ(std::get<Refused>(only(dic(encode(InterchangeMessage{Refused{""}})))).reason, "");
}

void expect_same_task(const Task& a, const Task& b) {
  EXPECT_EQ(a.task_id, b.task_id);
  EXPECT_EQ(a.kind, b.kind);
  EXPECT_EQ(a.fn_hash, b.fn_hash);
  EXPECT_EQ(a.fn, b.fn);
  EXPECT_EQ(a.payload, b.payload);
  EXPECT_EQ(a.inputs, b.inputs);
  EXPECT_EQ(a.after, b.after);
}

TEST(ProtocolTest, TasksRoundTrip) {
  Tasks in;
  in.tasks.push_back(sample_task(1, true));
  in.tasks.push_back(sample_task(UINT64_MAX, false));
  Task shell;
  shell.task_id = 77;
  shell.kind = kKindShell;
  shell.payload = encode_shell_payload({"ls", "", true, "", true, 0});
  in.tasks.push_back(shell);  // empty fn_hash, no fn, no inputs
  Task empty_fn = sample_task(3, true);
  empty_fn.fn = "";  // present but empty: not the same as absent
  in.tasks.push_back(empty_fn);

  const auto out = std::get<Tasks>(only(dic(encode(InterchangeMessage{in}))));
  ASSERT_EQ(out.tasks.size(), in.tasks.size());
  for (std::size_t i = 0; i < in.tasks.size(); ++i) expect_same_task(out.tasks[i], in.tasks[i]);
  EXPECT_TRUE(out.tasks[0].fn.has_value());
  EXPECT_FALSE(out.tasks[1].fn.has_value());
  EXPECT_TRUE(out.tasks[2].inputs.empty());
  ASSERT_TRUE(out.tasks[3].fn.has_value());
  EXPECT_EQ(*out.tasks[3].fn, "");

  EXPECT_TRUE(std::get<Tasks>(only(dic(encode(InterchangeMessage{Tasks{}})))).tasks.empty());
}

TEST(ProtocolTest, WorkerMessagesRoundTrip) {
  WorkerTask t{42, "h\0h"s, std::nullopt, kBinary, {}};
  auto out = std::get<WorkerTask>(only(dto(encode(ToWorker{t}))));
  EXPECT_EQ(out.task_id, 42u);
  EXPECT_EQ(out.fn_hash, "h\0h"s);
  EXPECT_FALSE(out.fn.has_value());
  EXPECT_EQ(out.payload, kBinary);
  EXPECT_TRUE(out.inputs.empty());

  t.fn = kBinary;
  t.inputs = {"", kBinary, std::string(70000, 'x')};  // bin8, bin16 and bin32 lengths
  out = std::get<WorkerTask>(only(dto(encode(ToWorker{t}))));
  EXPECT_EQ(out.fn, t.fn);
  EXPECT_EQ(out.inputs, t.inputs);

  const auto ready = std::get<WorkerReady>(only(dfrom(encode(FromWorker{WorkerReady{7, 123456}}))));
  EXPECT_EQ(ready.rank, 7);
  EXPECT_EQ(ready.pid, 123456);

  const auto res =
      std::get<WorkerResult>(only(dfrom(encode(FromWorker{WorkerResult{UINT64_MAX, kStatusException, kBinary}}))));
  EXPECT_EQ(res.task_id, UINT64_MAX);
  EXPECT_EQ(res.status, kStatusException);
  EXPECT_EQ(res.payload, kBinary);
}

TEST(ProtocolTest, LargePayloadRoundTrip) {
  const std::string mb = big_bytes(1 << 20);
  Task t = sample_task(5, true);
  t.payload = mb;
  t.fn = mb;
  t.inputs = {mb, mb};
  const auto tasks = std::get<Tasks>(only(dic(encode(InterchangeMessage{Tasks{{t}}}))));
  ASSERT_EQ(tasks.tasks.size(), 1u);
  expect_same_task(tasks.tasks[0], t);

  const auto wt = std::get<WorkerTask>(only(dto(encode(ToWorker{WorkerTask{5, t.fn_hash, mb, mb, {mb}}}))));
  EXPECT_EQ(wt.payload, mb);
  EXPECT_EQ(wt.inputs.at(0), mb);

  const auto wr = std::get<WorkerResult>(only(dfrom(encode(FromWorker{WorkerResult{5, kStatusOk, mb}}))));
  EXPECT_EQ(wr.payload, mb);

  const auto rs = std::get<Results>(only(dpool(encode(PoolMessage{Results{{{5, kStatusOk, mb}}}}))));
  EXPECT_EQ(rs.results.at(0).payload, mb);
}

// TASKS with out-of-band buffers: the frames after the message are the tasks' buffers, in
// order; the decoded tasks share those frames' bytes (no copy).
TEST(ProtocolTest, OutOfBandBuffersTravelAsTheFramesAfterTasks) {
  Task a = sample_task(1, true), b = sample_task(2, false), c = sample_task(3, false);
  a.buffers = {shared(big_bytes(1 << 20)), shared("")};
  c.buffers = {shared("tail")};
  const InterchangeMessage m{Tasks{{a, b, c}}};
  std::vector<SharedBuffer> frames = out_of_band_frames(m);
  ASSERT_EQ(frames.size(), 3u);
  EXPECT_EQ(frames[0].data, a.buffers[0].data) << "the frames are the tasks' own bytes, not copies";
  const std::string first = encode(m);
  frames.insert(frames.begin(), SharedBuffer{nullptr, first.data(), first.size()});
  std::string error;
  auto out = decode_interchange_message(frames, &error);
  ASSERT_TRUE(out) << error;
  const auto& tasks = std::get<Tasks>(*out).tasks;
  ASSERT_EQ(tasks.size(), 3u);
  ASSERT_EQ(tasks[0].buffers.size(), 2u);
  EXPECT_EQ(tasks[0].buffers[0].data, frames[1].data);
  EXPECT_EQ(tasks[0].buffers[0].view(), a.buffers[0].view());
  EXPECT_EQ(tasks[0].buffers[1].size, 0u);
  EXPECT_TRUE(tasks[1].buffers.empty());
  ASSERT_EQ(tasks[2].buffers.size(), 1u);
  EXPECT_EQ(tasks[2].buffers[0].view(), "tail");
  EXPECT_TRUE(out_of_band_frames(InterchangeMessage{Heartbeat{}}).empty());

  // Frames that do not match what the tasks announce: the message is rejected.
  auto missing = frames;
  missing.pop_back();
  EXPECT_FALSE(decode_interchange_message(missing, &error));
  EXPECT_NE(error.find("more out-of-band buffers"), std::string::npos) << error;
  auto extra = frames;
  extra.push_back(shared("x"));
  EXPECT_FALSE(decode_interchange_message(extra, &error));
  EXPECT_NE(error.find("frames more"), std::string::npos) << error;
  auto wrong_size = frames;
  wrong_size[3] = shared("tai");
  EXPECT_FALSE(decode_interchange_message(wrong_size, &error));
  EXPECT_NE(error.find("announces 4"), std::string::npos) << error;
  EXPECT_FALSE(decode_interchange_message(std::vector<SharedBuffer>{}, &error));
  // One frame alone cannot carry tasks that announce buffers.
  EXPECT_FALSE(dic(first, &error));
  // Other messages take no extra frame.
  const std::string hb = encode(InterchangeMessage{Heartbeat{}});
  EXPECT_FALSE(decode_interchange_message({SharedBuffer{nullptr, hb.data(), hb.size()}, shared("x")}, &error));
  EXPECT_TRUE(decode_interchange_message({SharedBuffer{nullptr, hb.data(), hb.size()}}, &error));

  // On the worker link the TASK carries the sizes; the bytes follow the frame.
  const auto wt = std::get<WorkerTask>(only(dto(encode(ToWorker{WorkerTask{4, "h", std::nullopt, "p", {}, {}, a.buffers}}))));
  ASSERT_EQ(wt.buffers.size(), 2u);
  EXPECT_EQ(wt.buffers[0].size, std::size_t{1} << 20);
  EXPECT_EQ(wt.buffers[0].data, nullptr);
  EXPECT_EQ(wt.buffers[1].size, 0u);
}

// RESULTS with out-of-band buffers (big results): the frames after the message are the results'
// buffers, in order, shared by the decoded results; RESULT on the worker link carries the sizes.
TEST(ProtocolTest, OutOfBandBuffersTravelAsTheFramesAfterResults) {
  TaskResult a{1, kStatusOk, "pa", {shared(big_bytes(1 << 20)), shared("")}}, b{2, kStatusException, "pb"},
      c{3, kStatusOk, "pc", {shared("tail")}};
  const PoolMessage m{Results{{a, b, c}}};
  std::vector<SharedBuffer> frames = out_of_band_frames(m);
  ASSERT_EQ(frames.size(), 3u);
  EXPECT_EQ(frames[0].data, a.buffers[0].data) << "the frames are the results' own bytes, not copies";
  const std::string first = encode(m);
  frames.insert(frames.begin(), SharedBuffer{nullptr, first.data(), first.size()});
  std::string error;
  auto out = decode_pool_message(frames, &error);
  ASSERT_TRUE(out) << error;
  const auto& results = std::get<Results>(*out).results;
  ASSERT_EQ(results.size(), 3u);
  EXPECT_EQ(results[0].payload, "pa");
  ASSERT_EQ(results[0].buffers.size(), 2u);
  EXPECT_EQ(results[0].buffers[0].data, frames[1].data);
  EXPECT_EQ(results[0].buffers[0].view(), a.buffers[0].view());
  EXPECT_EQ(results[0].buffers[1].size, 0u);
  EXPECT_TRUE(results[1].buffers.empty());
  ASSERT_EQ(results[2].buffers.size(), 1u);
  EXPECT_EQ(results[2].buffers[0].view(), "tail");
  EXPECT_TRUE(out_of_band_frames(PoolMessage{Heartbeat{}}).empty());

  auto missing = frames;
  missing.pop_back();
  EXPECT_FALSE(decode_pool_message(missing, &error));
  EXPECT_NE(error.find("RESULTS result 2 announces more out-of-band buffers"), std::string::npos) << error;
  auto extra = frames;
  extra.push_back(shared("x"));
  EXPECT_FALSE(decode_pool_message(extra, &error));
  EXPECT_NE(error.find("frames more"), std::string::npos) << error;
  auto wrong_size = frames;
  wrong_size[3] = shared("tai");
  EXPECT_FALSE(decode_pool_message(wrong_size, &error));
  EXPECT_NE(error.find("announces 4"), std::string::npos) << error;
  EXPECT_FALSE(decode_pool_message(std::vector<SharedBuffer>{}, &error));
  EXPECT_FALSE(dpool(first, &error)) << "one frame alone cannot carry results that announce buffers";
  const std::string hb = encode(PoolMessage{Heartbeat{}});
  EXPECT_FALSE(decode_pool_message({SharedBuffer{nullptr, hb.data(), hb.size()}, shared("x")}, &error));
  EXPECT_TRUE(decode_pool_message({SharedBuffer{nullptr, hb.data(), hb.size()}}, &error));

  const auto wr = std::get<WorkerResult>(only(dfrom(encode(FromWorker{WorkerResult{4, kStatusOk, "p", a.buffers}}))));
  EXPECT_EQ(wr.payload, "p");
  ASSERT_EQ(wr.buffers.size(), 2u);
  EXPECT_EQ(wr.buffers[0].size, std::size_t{1} << 20);
  EXPECT_EQ(wr.buffers[0].data, nullptr);
  EXPECT_EQ(wr.buffers[1].size, 0u);
}

TEST(ProtocolTest, ShellPayloadAndExitCodeRoundTrip) {
  const ShellPayload in{"echo 'a b' > /dev/null; exit 3", "/tmp/out \xc3\xa9.txt", false, "", true, 2.5};
  const auto enc = encode_shell_payload(in);
  const auto out = decode_shell_payload(enc.data(), enc.size());
  ASSERT_TRUE(out);
  EXPECT_EQ(out->command, in.command);
  EXPECT_EQ(out->stdout_path, in.stdout_path);
  EXPECT_EQ(out->stdout_append, false);
  EXPECT_EQ(out->stderr_path, "");
  EXPECT_EQ(out->stderr_append, true);
  EXPECT_EQ(out->walltime, 2.5);
  // The doc's layout: [command, stdout_path, stdout_append, stderr_path, stderr_append, walltime].
  EXPECT_EQ(enc, pack(A({S(in.command), S(in.stdout_path), Val::boolean(false), S(""), Val::boolean(true),
                         Val::flt(2.5)})));

  for (int code : {0, 1, 127, 128, 255, -1, -9, -129, INT32_MAX, INT32_MIN}) {
    const auto e = encode_exit_code(code);
    EXPECT_EQ(e, pack(I(code)));
    EXPECT_EQ(decode_exit_code(e.data(), e.size()), code);
  }
}

TEST(ProtocolTest, ShellPayloadAndExitCodeRejectMalformed) {
  auto shell = [](const std::string& b) { return decode_shell_payload(b.data(), b.size()); };
  auto code = [](const std::string& b) { return decode_exit_code(b.data(), b.size()); };
  EXPECT_FALSE(shell(""));
  EXPECT_FALSE(shell(pack(A({S("ls"), S(""), Val::boolean(true), S(""), Val::boolean(true)}))));  // 5 of 6
  EXPECT_FALSE(shell(pack(A({S("ls"), S(""), I(1), S(""), Val::boolean(true), Val::flt(0)}))));    // int for bool
  EXPECT_FALSE(shell(pack(A({B("ls"), S(""), Val::boolean(true), S(""), Val::boolean(true), Val::flt(0)}))));
  EXPECT_FALSE(shell(pack(A({S("ls"), S(""), Val::boolean(true), S(""), Val::boolean(true), S("1")}))));
  EXPECT_TRUE(shell(pack(A({S("ls"), S(""), Val::boolean(true), S(""), Val::boolean(true), I(10)}))));  // int secs
  EXPECT_FALSE(code(""));
  EXPECT_FALSE(code(pack(S("0"))));
  EXPECT_FALSE(code(pack(U(1ull << 31))));
  EXPECT_FALSE(code(pack(I(INT64_MIN))));
  EXPECT_FALSE(code(pack(I(0)) + "\x00"s));
  EXPECT_FALSE(code(pack(Val::flt(0))));
}

// ================================================================ the bytes on the wire
TEST(ProtocolTest, EncodingMatchesTheDocLayout) {
  const Register r = sample_register();
  EXPECT_EQ(encode(PoolMessage{r}), pack(A({I(1), I(kProtocolVersion), S(r.pervade_version), S(r.python_version), S(r.pool_id),
                                           S(r.block_id), S(r.hostname), I(48), I(3), I(64), U(std::uint64_t{1} << 37),
                                           A({I(64), U(120000), I(4), Val::flt(0)}), Val::flt(3600), Val::flt(3599.5)})));
  EXPECT_EQ(encode(PoolMessage{Heartbeat{}}), "\x91\x02"s);
  EXPECT_EQ(encode(PoolMessage{Drained{}}), "\x91\x04"s);
  EXPECT_EQ(encode(InterchangeMessage{Heartbeat{}}), "\x91\x68"s);  // 104
  EXPECT_EQ(encode(InterchangeMessage{Drain{}}), "\x91\x69"s);
  EXPECT_EQ(encode(InterchangeMessage{Shutdown{}}), "\x91\x6a"s);
  EXPECT_EQ(encode(ToWorker{WorkerExit{}}), "\x91\x04"s);
  EXPECT_EQ(encode(PoolMessage{Results{{{UINT64_MAX, 1, kBinary}}}}),
            pack(A({I(3), A({A({U(UINT64_MAX), I(1), B(kBinary), A({}), Val::nil()})})})));
  EXPECT_EQ(encode(PoolMessage{Results{{{9, 0, "p", {}, std::chrono::microseconds(250)}}}}),
            pack(A({I(3), A({A({U(9), I(0), B("p"), A({}), U(250)})})})));
  // Float fields are msgpack float 64 even when integral (msgpack-c's pack_double would write 30).
  EXPECT_EQ(encode(InterchangeMessage{Registered{30, 120}}), pack(A({I(101), Val::flt(30), Val::flt(120), Val::flt(-1)})));
  UsageSample u{7, 1700000000000000, 42, 2, 1.5, 0.25, 1000, 2000, 3, 4, 5, 6, true, false};
  EXPECT_EQ(encode(PoolMessage{Usage{{u}}}),
            pack(A({I(6), A({A({U(7), U(1700000000000000), I(42), I(2), Val::flt(1.5), Val::flt(0.25), U(1000), U(2000),
                               U(3), U(4), U(5), U(6), I(1)})})})));
  EXPECT_EQ(encode_shell_payload({"ls", "o", true, "e", true, 0}),
            pack(A({S("ls"), S("o"), Val::boolean(true), S("e"), Val::boolean(true), Val::flt(0)})));
  const auto neg_zero = std::get<Registered>(only(dic(encode(InterchangeMessage{Registered{-0.0, 1}}))));
  EXPECT_TRUE(std::signbit(neg_zero.heartbeat_period));
  EXPECT_EQ(encode(InterchangeMessage{Refused{"no"}}), pack(A({I(102), S("no")})));
  const Task with = sample_task(300, true), without = sample_task(70000, false);
  EXPECT_EQ(encode(InterchangeMessage{Tasks{{with, without}}}),
            pack(A({I(103), A({A({U(300), I(0), B(with.fn_hash), B(*with.fn), B(with.payload),
                                  A({B(kBinary), B(""), B("\x00"s)}), A({}), A({}), Val::nil(), Val::nil()}),
                               A({U(70000), I(0), B(without.fn_hash), Val::nil(), B(without.payload),
                                  A({B(kBinary), B(""), B("\x00"s)}),
                                  A({A({I(1), U(70001)}), A({I(0), U(UINT64_MAX)})}), A({}), Val::nil(), Val::nil()})})})));
  // Out-of-band buffers: only their sizes are in the message.
  Task oob = sample_task(1, true);
  oob.buffers = {shared("abc"), shared(std::string(70000, 'x'))};
  EXPECT_EQ(encode(InterchangeMessage{Tasks{{oob}}}),
            pack(A({I(103), A({A({U(1), I(0), B(oob.fn_hash), B(*oob.fn), B(oob.payload),
                                  A({B(kBinary), B(""), B("\x00"s)}), A({}), A({U(3), U(70000)}), Val::nil(), Val::nil()})})})));
  EXPECT_EQ(encode(ToWorker{WorkerTask{1, "h", std::nullopt, "p", {"i"}}}),
            pack(A({I(1), U(1), B("h"), Val::nil(), B("p"), A({B("i")}), A({}), A({}), Val::nil()})));
  EXPECT_EQ(encode(ToWorker{WorkerTask{2, "h", std::nullopt, "p", {""}, {{0, 1}}}}),
            pack(A({I(1), U(2), B("h"), Val::nil(), B("p"), A({B("")}), A({A({I(0), U(1)})}), A({}), Val::nil()})));
  EXPECT_EQ(encode(ToWorker{WorkerTask{3, "h", std::nullopt, "p", {}, {}, {shared("abcd")}}}),
            pack(A({I(1), U(3), B("h"), Val::nil(), B("p"), A({}), A({}), A({U(4)}), Val::nil()})));
  // A task's resources, and a worker task's own CPUs and accelerators.
  Task sized = sample_task(5, false);
  sized.after.clear();
  sized.resources = Resources{4, 2000, 1, 90};
  EXPECT_EQ(encode(InterchangeMessage{Tasks{{sized}}}),
            pack(A({I(103), A({A({U(5), I(0), B(sized.fn_hash), Val::nil(), B(sized.payload),
                                  A({B(kBinary), B(""), B("\x00"s)}), A({}), A({}),
                                  A({I(4), U(2000), I(1), Val::flt(90)}), Val::nil()})})})));
  EXPECT_EQ(std::get<Tasks>(only(dic(encode(InterchangeMessage{Tasks{{sized}}})))).tasks[0].resources,
            (Resources{4, 2000, 1, 90}));
  // An MPI task's request, and the variables a worker task runs with.
  Task mpi = sample_task(6, false);
  mpi.after.clear();
  mpi.mpi = MpiRequest{2, 3, 5, "--x"};
  EXPECT_EQ(encode(InterchangeMessage{Tasks{{mpi}}}),
            pack(A({I(103), A({A({U(6), I(0), B(mpi.fn_hash), Val::nil(), B(mpi.payload),
                                  A({B(kBinary), B(""), B("\x00"s)}), A({}), A({}), Val::nil(),
                                  A({I(2), I(3), I(5), S("--x")})})})})));
  EXPECT_EQ(std::get<Tasks>(only(dic(encode(InterchangeMessage{Tasks{{mpi}}})))).tasks[0].mpi, mpi.mpi);
  WorkerTask with_env{7, "h", std::nullopt, "p", {}};
  with_env.env = {{"PARSL_NUM_NODES", "2"}};
  EXPECT_EQ(encode(ToWorker{with_env}), pack(A({I(1), U(7), B("h"), Val::nil(), B("p"), A({}), A({}), A({}),
                                                A({A({}), A({}), A({A({S("PARSL_NUM_NODES"), S("2")})})})})));
  EXPECT_EQ(std::get<WorkerTask>(only(dto(encode(ToWorker{with_env})))).env, with_env.env);
  WorkerTask placed{4, "h", std::nullopt, "p", {}};
  placed.cpus = {2, 3};
  placed.accelerators = {"1"};
  EXPECT_EQ(encode(ToWorker{placed}), pack(A({I(1), U(4), B("h"), Val::nil(), B("p"), A({}), A({}), A({}),
                                              A({A({I(2), I(3)}), A({S("1")}), A({})})})));
  EXPECT_EQ(encode(FromWorker{WorkerReady{0, 99}}), pack(A({I(2), I(0), I(99)})));
  EXPECT_EQ(encode(FromWorker{WorkerResult{8, 2, "lost"}}), pack(A({I(3), U(8), I(2), B("lost"), A({})})));
  EXPECT_EQ(encode(FromWorker{WorkerResult{8, 0, "p", {shared("abcd")}}}),
            pack(A({I(3), U(8), I(0), B("p"), A({U(4)})})));
  EXPECT_EQ(encode(PoolMessage{Results{{{7, 0, "p", {shared("ab"), shared("")}}}}}),
            pack(A({I(3), A({A({U(7), I(0), B("p"), A({U(2), U(0)}), Val::nil()})})})));
}

TEST(ProtocolTest, DecodesOtherWaysOfWritingTheSameValues) {
  // Integers in wider encodings than needed, and whole seconds as integers, are the same values.
  const std::string wide_ready = "\x93\xcc\x02\xd2\x00\x00\x00\x05\xcf\x00\x00\x00\x00\x00\x00\x00\x07"s;
  const auto ready = std::get<WorkerReady>(only(dfrom(wide_ready)));
  EXPECT_EQ(ready.rank, 5);
  EXPECT_EQ(ready.pid, 7);
  const auto reg = std::get<Registered>(only(dic(pack(A({I(101), I(30), U(120), I(-1)})))));
  EXPECT_EQ(reg.heartbeat_period, 30);
  EXPECT_EQ(reg.heartbeat_threshold, 120);
  EXPECT_EQ(reg.resource_interval, -1);
  // A float32.
  const auto reg32 = std::get<Registered>(only(dic(pack(A({I(101), Val::raw("\xca\x3f\xc0\x00\x00"s), I(1), I(0)})))));
  EXPECT_EQ(reg32.heartbeat_period, 1.5);
  // array16 header for a short array.
  EXPECT_TRUE(std::holds_alternative<Heartbeat>(only(dpool("\xdc\x00\x01\x02"s))));
}

// ================================================================ rejection
TEST(ProtocolTest, RejectsEmptyInput) {
  EXPECT_EQ(reject(dpool, ""), "empty input");
  reject(dic, "");
  reject(dto, "");
  reject(dfrom, "");
  std::string error;
  EXPECT_FALSE(decode_pool_message(nullptr, 0, &error));
  EXPECT_FALSE(error.empty());
  EXPECT_FALSE(decode_pool_message(nullptr, 0));  // no error out-parameter
}

TEST(ProtocolTest, RejectsNonMessages) {
  EXPECT_EQ(reject(dpool, pack(I(2))), "not an array");
  EXPECT_EQ(reject(dpool, pack(S("hello"))), "not an array");
  EXPECT_EQ(reject(dpool, pack(Val::map1(I(1), I(2)))), "not an array");
  EXPECT_EQ(reject(dpool, pack(A({}))), "empty array");
  EXPECT_EQ(reject(dpool, pack(A({S("2")}))), "message type: expected int");
  EXPECT_EQ(reject(dic, pack(A({Val::nil()}))), "message type: expected int");
  EXPECT_EQ(reject(dto, pack(A({Val::flt(1)}))), "message type: expected int");
  reject(dpool, "\xc1"s);       // the never-used byte
  reject(dpool, "\x92\x01"s);   // truncated array
  reject(dpool, "\xd9\x05" "ab"s);  // truncated str
}

TEST(ProtocolTest, RejectsUnknownTypes) {
  EXPECT_EQ(reject(dpool, pack(A({I(77)}))), "unknown type 77");
  EXPECT_EQ(reject(dic, pack(A({I(77)}))), "unknown type 77");
  EXPECT_EQ(reject(dto, pack(A({I(0)}))), "unknown type 0");
  EXPECT_EQ(reject(dfrom, pack(A({I(-1)}))), "unknown type -1");
  reject(dpool, pack(A({U(UINT64_MAX)})));
  reject(dpool, pack(A({I(INT64_MIN)})));
  reject(dto, pack(A({I(101)})));  // an interchange type on the worker link
}

TEST(ProtocolTest, RejectsWrongDirection) {
  // Each decoder refuses the other direction's messages on its link.
  for (const auto& m : {encode(InterchangeMessage{Registered{}}), encode(InterchangeMessage{Refused{"x"}}),
                        encode(InterchangeMessage{Tasks{}}), encode(InterchangeMessage{Heartbeat{}}),
                        encode(InterchangeMessage{Drain{}}), encode(InterchangeMessage{Shutdown{}})}) {
    const auto e = reject(dpool, m);
    EXPECT_NE(e.find("is not a pool -> interchange message"), std::string::npos) << e;
  }
  EXPECT_EQ(reject(dpool, encode(InterchangeMessage{Tasks{}})),
            "type 103 (TASKS) is not a pool -> interchange message");
  for (const auto& m : {encode(PoolMessage{sample_register()}), encode(PoolMessage{Heartbeat{}}),
                        encode(PoolMessage{Results{}}), encode(PoolMessage{Drained{}})})
    reject(dic, m);
  EXPECT_EQ(reject(dic, encode(PoolMessage{sample_register()})),
            "type 1 (REGISTER) is not a interchange -> pool message");
  for (const auto& m : {encode(FromWorker{WorkerReady{}}), encode(FromWorker{WorkerResult{}})}) reject(dto, m);
  for (const auto& m : {encode(ToWorker{WorkerTask{}}), encode(ToWorker{WorkerExit{}})}) reject(dfrom, m);
  EXPECT_EQ(reject(dfrom, encode(ToWorker{WorkerExit{}})), "type 4 (EXIT) is not a worker -> pool message");
}

TEST(ProtocolTest, RejectsWrongArity) {
  EXPECT_EQ(reject(dpool, pack(A({I(2), I(0)}))), "HEARTBEAT: expected 0 fields, got 1");
  reject(dpool, pack(A({I(4), Val::nil()})));
  reject(dpool, pack(A({I(3)})));
  reject(dpool, pack(A({I(3), A({}), A({})})));
  reject(dpool, pack(A({I(1), I(kProtocolVersion), S("v"), S("3.11"), S("p"), S("b"), S("h"), I(1)})));  // 7 of 13
  reject(dpool, pack(A({I(1), I(kProtocolVersion), S("v"), S("3.11"), S("p"), S("b"), S("h"), I(1), I(0), I(0)})));
  EXPECT_EQ(reject(dpool, pack(A({I(1)}))), "REGISTER: expected 13 fields, got 0");
  reject(dpool, pack(A({I(6), A({A({U(7)})})})));  // a USAGE sample of 1 field, not 13
  reject(dic, pack(A({I(101), Val::flt(1)})));
  reject(dic, pack(A({I(102)})));
  reject(dic, pack(A({I(102), S("a"), S("b")})));
  reject(dic, pack(A({I(103)})));
  reject(dic, pack(A({I(104), I(0)})));
  reject(dic, pack(A({I(105), I(0)})));
  reject(dic, pack(A({I(106), I(0)})));
  reject(dto, pack(A({I(1), U(1), B("h"), Val::nil(), B("p"), A({}), A({}), A({})})));
  reject(dto, pack(A({I(1), U(1), B("h"), Val::nil(), B("p"), A({}), A({}), A({}), Val::nil(), A({})})));
  reject(dto, pack(A({I(4), I(4)})));
  reject(dfrom, pack(A({I(2), I(0)})));
  reject(dfrom, pack(A({I(3), U(1), I(0)})));
  // Records inside lists.
  EXPECT_EQ(reject(dpool, pack(A({I(3), A({A({U(1), I(0), B("x"), A({}), U(1)}), A({U(1), I(0), B("x"), A({})})})}))),
            "RESULTS result 1: expected array of 5");  // version 10's results, without a run time
  reject(dpool, pack(A({I(3), A({B("x")})})));
  EXPECT_EQ(reject(dic, pack(A({I(103), A({A({U(1), I(0), B("h"), Val::nil(), B("p")})})}))),
            "TASKS task 0: expected array of 10");
}

TEST(ProtocolTest, RejectsWrongFieldTypes) {
  const auto reg = [](Val f2, Val f7) {
    return pack(A({I(1), I(kProtocolVersion), std::move(f2), S("3.11.7"), S("p"), S("b"), S("h"), std::move(f7), I(0), I(8), U(1), Val::nil(),
                   Val::flt(0), I(0)}));
  };
  EXPECT_TRUE(dpool(reg(S("0.1"), I(4))));
  EXPECT_EQ(reject(dpool, reg(B("0.1"), I(4))), "field 2 of REGISTER: expected str");  // bin for str
  EXPECT_EQ(reject(dpool, reg(S("0.1"), S("4"))), "field 7 of REGISTER: expected int");
  EXPECT_EQ(reject(dpool, reg(S("0.1"), U(1ull << 31))), "field 7 of REGISTER: expected int in 32-bit range");
  reject(dpool, reg(S("0.1"), I(-(1ll << 31) - 1)));
  reject(dpool, reg(S("0.1"), Val::flt(4)));  // a float for an int
  reject(dpool, reg(Val::nil(), I(4)));
  reject(dpool, pack(A({I(1), S("1"), S("v"), S("3.11"), S("p"), S("b"), S("h"), I(1), I(0)})));

  // RESULTS: negative task id, str payload, nil payload, a run time that is not a uint.
  reject(dpool, pack(A({I(3), A({A({I(-1), I(0), B("x"), A({}), Val::nil()})})})));
  EXPECT_EQ(reject(dpool, pack(A({I(3), A({A({U(1), I(0), S("x"), A({}), Val::nil()})})}))),
            "field 2 of RESULTS result 0: expected bin");  // str for bin
  reject(dpool, pack(A({I(3), A({A({U(1), I(0), Val::nil(), A({}), Val::nil()})})})));
  reject(dpool, pack(A({I(3), A({A({U(1), I(0), B("x"), A({I(-1)}), Val::nil()})})})));  // a negative buffer size
  EXPECT_TRUE(dpool(pack(A({I(3), A({A({U(1), I(0), B("x"), A({}), U(3)})})}))));
  EXPECT_EQ(reject(dpool, pack(A({I(3), A({A({U(1), I(0), B("x"), A({}), I(-3)})})}))),
            "field 4 of RESULTS result 0: expected uint or nil");  // a negative run time
  reject(dpool, pack(A({I(3), A({A({U(1), I(0), B("x"), A({}), Val::flt(0.5)})})})));
  reject(dpool, pack(A({I(3), B("not a list")})));

  // REGISTERED / REFUSED.
  reject(dic, pack(A({I(101), S("30"), Val::flt(1)})));
  reject(dic, pack(A({I(101), Val::flt(1), Val::nil()})));
  reject(dic, pack(A({I(102), B("reason")})));

  // TASKS: each field of a task record.
  const auto task = [](Val id, Val kind, Val hash, Val fn, Val payload, Val inputs, Val after = A({}),
                       Val buffers = A({}), Val resources = Val::nil(), Val mpi = Val::nil()) {
    return pack(A({I(103), A({A({std::move(id), std::move(kind), std::move(hash), std::move(fn), std::move(payload),
                                 std::move(inputs), std::move(after), std::move(buffers), std::move(resources),
                                 std::move(mpi)})})}));
  };
  EXPECT_TRUE(dic(task(U(1), I(0), B("h"), Val::nil(), B("p"), A({}))));
  EXPECT_TRUE(dic(task(U(1), I(1), B("h"), B("f"), B("p"), A({B("i")}))));
  reject(dic, task(I(-5), I(0), B("h"), Val::nil(), B("p"), A({})));
  reject(dic, task(S("1"), I(0), B("h"), Val::nil(), B("p"), A({})));
  reject(dic, task(U(1), Val::nil(), B("h"), Val::nil(), B("p"), A({})));
  reject(dic, task(U(1), I(0), S("h"), Val::nil(), B("p"), A({})));
  EXPECT_EQ(reject(dic, task(U(1), I(0), B("h"), S("f"), B("p"), A({}))),
            "field 3 of TASKS task 0: expected bin or nil");
  reject(dic, task(U(1), I(0), B("h"), Val::boolean(false), B("p"), A({})));
  reject(dic, task(U(1), I(0), B("h"), Val::nil(), Val::nil(), A({})));
  reject(dic, task(U(1), I(0), B("h"), Val::nil(), B("p"), Val::nil()));
  reject(dic, task(U(1), I(0), B("h"), Val::nil(), B("p"), B("i")));
  EXPECT_EQ(reject(dic, task(U(1), I(0), B("h"), Val::nil(), B("p"), A({B("i"), S("j")}))),
            "field 5 of TASKS task 0, element 1: expected bin");
  reject(dic, task(U(1), I(0), B("h"), Val::nil(), B("p"), A({A({})})));
  // after: pairs of [input index (32-bit), task id].
  EXPECT_TRUE(dic(task(U(1), I(0), B("h"), Val::nil(), B("p"), A({B("")}), A({A({I(0), U(9)})}))));
  reject(dic, task(U(1), I(0), B("h"), Val::nil(), B("p"), A({}), Val::nil()));
  reject(dic, task(U(1), I(0), B("h"), Val::nil(), B("p"), A({}), A({A({I(0)})})));
  reject(dic, task(U(1), I(0), B("h"), Val::nil(), B("p"), A({}), A({A({I(0), U(1), U(2)})})));
  reject(dic, task(U(1), I(0), B("h"), Val::nil(), B("p"), A({}), A({A({I(-1), U(1)})})));
  reject(dic, task(U(1), I(0), B("h"), Val::nil(), B("p"), A({}), A({A({U(1ull << 32), U(1)})})));
  reject(dic, task(U(1), I(0), B("h"), Val::nil(), B("p"), A({}), A({A({I(0), S("1")})})));
  // Buffer sizes: an array of uints.
  EXPECT_TRUE(dic(task(U(1), I(0), B("h"), Val::nil(), B("p"), A({}), A({}), A({}))));
  reject(dic, task(U(1), I(0), B("h"), Val::nil(), B("p"), A({}), A({}), Val::nil()));
  EXPECT_EQ(reject(dic, task(U(1), I(0), B("h"), Val::nil(), B("p"), A({}), A({}), A({I(-1)}))),
            "field 7 of TASKS task 0, element 0: expected uint");
  reject(dic, task(U(1), I(0), B("h"), Val::nil(), B("p"), A({}), A({}), A({B("3")})));
  // Resources: nil or [cores, memory_mb, gpus, running_time], none negative.
  EXPECT_TRUE(dic(task(U(1), I(0), B("h"), Val::nil(), B("p"), A({}), A({}), A({}), A({I(1), U(0), I(2), I(0)}))));
  reject(dic, task(U(1), I(0), B("h"), Val::nil(), B("p"), A({}), A({}), A({}), A({I(1), U(0), I(2)})));
  reject(dic, task(U(1), I(0), B("h"), Val::nil(), B("p"), A({}), A({}), A({}), A({I(-1), U(0), I(0), I(0)})));
  reject(dic, task(U(1), I(0), B("h"), Val::nil(), B("p"), A({}), A({}), A({}), A({I(1), I(-5), I(0), I(0)})));
  reject(dic, task(U(1), I(0), B("h"), Val::nil(), B("p"), A({}), A({}), A({}), A({I(1), U(0), I(0), Val::flt(-1)})));
  // A REGISTER's capacity is a Resources too.
  reject(dpool, pack(A({I(1), I(kProtocolVersion), S("v"), S("3.11"), S("p"), S("b"), S("h"), I(1), I(0), I(8), U(1),
                        A({I(-1), U(0), I(0), I(0)}), Val::flt(0), Val::flt(0)})));
  // MPI: nil or [num_nodes >= 1, ranks_per_node >= 0, num_ranks >= 0, launcher_options].
  EXPECT_TRUE(dic(task(U(1), I(0), B("h"), Val::nil(), B("p"), A({}), A({}), A({}), Val::nil(),
                       A({I(1), I(0), I(0), S("")}))));
  reject(dic, task(U(1), I(0), B("h"), Val::nil(), B("p"), A({}), A({}), A({}), Val::nil(), A({I(0), I(1), I(1), S("")})));
  reject(dic, task(U(1), I(0), B("h"), Val::nil(), B("p"), A({}), A({}), A({}), Val::nil(), A({I(1), I(1), I(1)})));
  reject(dic, task(U(1), I(0), B("h"), Val::nil(), B("p"), A({}), A({}), A({}), Val::nil(), A({I(1), I(1), I(1), I(2)})));

  // Worker link.
  reject(dto, pack(A({I(1), I(-1), B("h"), Val::nil(), B("p"), A({}), A({}), A({}), Val::nil()})));
  reject(dto, pack(A({I(1), U(1), S("h"), Val::nil(), B("p"), A({}), A({}), A({}), Val::nil()})));
  reject(dto, pack(A({I(1), U(1), B("h"), S("f"), B("p"), A({}), A({}), A({}), Val::nil()})));
  reject(dto, pack(A({I(1), U(1), B("h"), Val::nil(), S("p"), A({}), A({}), A({}), Val::nil()})));
  reject(dto, pack(A({I(1), U(1), B("h"), Val::nil(), B("p"), A({Val::nil()}), A({}), A({}), Val::nil()})));
  reject(dto, pack(A({I(1), U(1), B("h"), Val::nil(), B("p"), A({B("")}), A({A({I(0), S("x")})}), A({}), Val::nil()})));
  reject(dto, pack(A({I(1), U(1), B("h"), Val::nil(), B("p"), A({}), A({}), A({S("1")}), Val::nil()})));
  reject(dto, pack(A({I(1), U(1), B("h"), Val::nil(), B("p"), A({}), A({}), Val::nil(), Val::nil()})));
  // Placement: nil or [[cpu >= 0, ...], [accelerator id (str), ...], [[name, value], ...]].
  EXPECT_TRUE(dto(pack(A({I(1), U(1), B("h"), Val::nil(), B("p"), A({}), A({}), A({}),
                          A({A({I(0)}), A({S("a")}), A({})})}))));
  reject(dto, pack(A({I(1), U(1), B("h"), Val::nil(), B("p"), A({}), A({}), A({}), A({A({I(0)}), A({S("a")})})})));
  reject(dto, pack(A({I(1), U(1), B("h"), Val::nil(), B("p"), A({}), A({}), A({}), A({A({})})})));
  reject(dto, pack(A({I(1), U(1), B("h"), Val::nil(), B("p"), A({}), A({}), A({}), A({A({I(-1)}), A({}), A({})})})));
  reject(dto, pack(A({I(1), U(1), B("h"), Val::nil(), B("p"), A({}), A({}), A({}), A({A({}), A({I(0)}), A({})})})));
  reject(dto, pack(A({I(1), U(1), B("h"), Val::nil(), B("p"), A({}), A({}), A({}), A({A({}), A({}), A({A({S("x")})})})})));
  reject(dfrom, pack(A({I(2), S("0"), I(1)})));
  reject(dfrom, pack(A({I(2), I(0), U(1ull << 40)})));
  reject(dfrom, pack(A({I(3), U(1), I(0), S("x"), A({})})));
  reject(dfrom, pack(A({I(3), Val::flt(1), I(0), B("x"), A({})})));
  reject(dfrom, pack(A({I(3), U(1), I(0), B("x"), B("not sizes")})));
}

TEST(ProtocolTest, RejectsTrailingBytes) {
  for (const auto& m : corpus()) {
    for (const std::string& tail : {"\x00"s, "\xc0"s, m}) {
      const std::string b = m + tail;
      std::string e;
      EXPECT_FALSE(dpool(b, &e));
      EXPECT_FALSE(dic(b, &e));
      EXPECT_FALSE(dto(b, &e));
      EXPECT_FALSE(dfrom(b, &e));
      EXPECT_FALSE(decode_shell_payload(b.data(), b.size()));
      EXPECT_FALSE(decode_exit_code(b.data(), b.size()));
    }
  }
  EXPECT_EQ(reject(dpool, "\x91\x02\x00\x00"s), "2 trailing bytes after the message");
}

TEST(ProtocolTest, RejectsEveryTruncation) {
  for (const auto& m : corpus())
    for (std::size_t n = 0; n < m.size(); ++n) {
      const std::string b = m.substr(0, n);
      std::string e;
      EXPECT_FALSE(dpool(b, &e));
      EXPECT_FALSE(dic(b, &e));
      EXPECT_FALSE(dto(b, &e));
      EXPECT_FALSE(dfrom(b, &e));
      EXPECT_FALSE(e.empty());
    }
}

TEST(ProtocolTest, ForgedLengthsDoNotAllocate) {
  // Headers that claim 4 G elements or bytes in a few bytes of input fail at once, without
  // msgpack-c preallocating space for what the header claims.
  const std::vector<std::string> forged = {
      "\xdd\xff\xff\xff\xff"s,                      // array32 of 2^32-1
      "\xdd\xff\xff\xff\xff\x01\x02\x03"s,
      "\x92\x03\xdd\xff\xff\xff\xff"s,              // RESULTS with a huge list
      "\x92\x03\x91\xdd\xff\xff\xff\xff\x01"s,
      "\xdf\xff\xff\xff\xff"s,                      // map32
      "\xc6\xff\xff\xff\xff"s,                      // bin32
      "\xdb\xff\xff\xff\xff"s,                      // str32
      "\xc9\xff\xff\xff\xff\x01"s,                  // ext32
      "\x98\x01\x01\xc4\x01h\xc0\xc6\xff\xff\xff\xf0"s,  // TASK whose payload claims 4 GB
  };
  for (const auto& b : forged) {
    reject(dpool, b);
    reject(dic, b);
    reject(dto, b);
    reject(dfrom, b);
    EXPECT_FALSE(decode_shell_payload(b.data(), b.size()));
    EXPECT_FALSE(decode_exit_code(b.data(), b.size()));
  }
  // Deep nesting is refused too.
  std::string deep(100000, '\x91');
  deep += '\x02';
  reject(dpool, deep);
}

TEST(ProtocolTest, RegisterFromAnotherProtocolVersionStillDecodes) {
  // So the interchange can answer REFUSED naming both versions, even if that version lays
  // REGISTER out differently.
  auto r = std::get<Register>(only(dpool(pack(A({I(1), I(99), S("0.9.0"), S("3.13.1"), S("p"), Val::nil()})))));
  EXPECT_EQ(r.protocol_version, 99);
  EXPECT_EQ(r.pervade_version, "0.9.0");
  EXPECT_EQ(r.python_version, "3.13.1");
  EXPECT_EQ(r.pool_id, "p");
  EXPECT_EQ(r.block_id, "");
  r = std::get<Register>(only(dpool(pack(A({I(1), I(0)})))));
  EXPECT_EQ(r.protocol_version, 0);
  // The version itself must still be an int, and the current version stays strict.
  reject(dpool, pack(A({I(1), S("2")})));
  reject(dpool, pack(A({I(1), I(kProtocolVersion), S("0.9.0")})));
}

// ================================================================ fuzzing
TEST(ProtocolTest, FuzzRandomBuffers) {
  std::mt19937 rng(12345);
  std::uniform_int_distribution<int> len(0, 200), byte(0, 255), coin(0, 3);
  for (int i = 0; i < 20000; ++i) {
    std::string b(static_cast<std::size_t>(len(rng)), '\0');
    for (auto& c : b) c = static_cast<char>(byte(rng));
    // A quarter of the buffers start like a message (small array, known type) to get deeper.
    if (coin(rng) == 0 && b.size() >= 2) {
      b[0] = static_cast<char>(0x90 | (byte(rng) % 8));
      static const unsigned char types[] = {1, 2, 3, 4, 101, 102, 103, 104, 105, 106};
      b[1] = static_cast<char>(types[byte(rng) % 10]);
    }
    decode_everything(b);
    if (HasFailure()) FAIL() << "buffer " << i;
  }
}

TEST(ProtocolTest, FuzzMutatedMessages) {
  const auto seeds = corpus();
  std::mt19937 rng(424242);
  auto pick = [&](std::size_t n) { return n == 0 ? 0 : std::uniform_int_distribution<std::size_t>(0, n - 1)(rng); };
  std::uniform_int_distribution<int> byte(0, 255);
  static const char interesting[] = {'\x00', '\x7f', '\x80', '\xff', '\xc0', '\xc4', '\xd9', '\xdc',
                                     '\xdd', '\xc6', '\xcf', '\xd3', '\x90', '\x9f', '\xa0', '\xcb'};
  int decoded = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string b = seeds[pick(seeds.size())];
    const int rounds = 1 + static_cast<int>(pick(3));
    for (int r = 0; r < rounds; ++r) {
      switch (pick(6)) {
        case 0:  // flip bits of one byte
          if (!b.empty()) b[pick(b.size())] ^= static_cast<char>(1 + pick(255));
          break;
        case 1:  // overwrite one byte with a msgpack marker
          if (!b.empty()) b[pick(b.size())] = interesting[pick(sizeof interesting)];
          break;
        case 2:  // truncate
          b.resize(pick(b.size() + 1));
          break;
        case 3:  // append random bytes
          for (std::size_t k = 1 + pick(8); k > 0; --k) b.push_back(static_cast<char>(byte(rng)));
          break;
        case 4:  // insert a byte
          b.insert(b.begin() + static_cast<std::ptrdiff_t>(pick(b.size() + 1)), static_cast<char>(byte(rng)));
          break;
        case 5:  // delete a byte
          if (!b.empty()) b.erase(pick(b.size()), 1);
          break;
      }
    }
    std::string e1, e2, e3, e4;
    decoded += dpool(b, &e1).has_value() + dic(b, &e2).has_value() + dto(b, &e3).has_value() +
               dfrom(b, &e4).has_value();
    // As the first of several frames (TASKS with out-of-band buffers).
    (void)decode_interchange_message({SharedBuffer{nullptr, b.data(), b.size()}, shared("xyz")}, &e2);
    decode_everything(b);
    if (HasFailure()) FAIL() << "mutation " << i;
  }
  // Single-byte changes inside bin payloads keep many messages valid: the fuzz reaches
  // the success path too, not only the parser's errors.
  EXPECT_GT(decoded, 100);
}

// ================================================================ framing
std::string le32(std::uint32_t n) {
  std::string s;
  for (int i = 0; i < 4; ++i) s.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  return s;
}

TEST(ProtocolTest, FrameIsLittleEndianLengthThenBody) {
  EXPECT_EQ(frame(""), "\x00\x00\x00\x00"s);
  EXPECT_EQ(frame("abc"), "\x03\x00\x00\x00"s + "abc");
  const std::string big(0x10203, 'z');
  EXPECT_EQ(frame(big), "\x03\x02\x01\x00"s + big);
}

TEST(ProtocolTest, FrameReaderByteAtATime) {
  const std::vector<std::string> bodies = {encode(FromWorker{WorkerReady{1, 2}}), "", kBinary,
                                           std::string(1000, '\xff'), "x"};
  std::string stream;
  for (const auto& b : bodies) stream += frame(b);
  FrameReader reader;
  std::vector<std::string> got;
  std::string out;
  bool broken = true;
  for (char c : stream) {
    reader.feed(&c, 1);
    while (reader.next(&out, &broken)) got.push_back(out);
    EXPECT_FALSE(broken);
  }
  EXPECT_EQ(got, bodies);
  EXPECT_FALSE(reader.next(&out, &broken));
  EXPECT_FALSE(broken);
}

TEST(ProtocolTest, FrameReaderSeveralFramesPerFeedAndSplitFeeds) {
  std::vector<std::string> bodies;
  std::string stream;
  std::mt19937 rng(99);
  for (int i = 0; i < 500; ++i) {
    bodies.push_back(big_bytes(rng() % 300));
    stream += frame(bodies.back());
  }
  for (std::size_t chunk : {std::size_t{3}, std::size_t{4}, std::size_t{5}, std::size_t{1000}, stream.size()}) {
    FrameReader reader;
    std::vector<std::string> got;
    std::string out;
    bool broken = false;
    for (std::size_t pos = 0; pos < stream.size(); pos += chunk) {
      reader.feed(stream.data() + pos, std::min(chunk, stream.size() - pos));
      while (reader.next(&out, &broken)) got.push_back(out);
      ASSERT_FALSE(broken);
    }
    EXPECT_EQ(got, bodies) << "chunk " << chunk;
  }
  // All of it in one feed, then drained: the reader is empty again and keeps working.
  FrameReader reader;
  reader.feed(stream.data(), stream.size());
  std::string out;
  bool broken = false;
  std::size_t n = 0;
  while (reader.next(&out, &broken)) EXPECT_EQ(out, bodies[n++]);
  EXPECT_EQ(n, bodies.size());
  const std::string again = frame("again");
  reader.feed(again.data(), again.size());
  ASSERT_TRUE(reader.next(&out, &broken));
  EXPECT_EQ(out, "again");
}

TEST(ProtocolTest, FrameReaderLongStreamWithPartialTail) {
  // Frames keep arriving with a partial one always pending: exercises the compaction path
  // (consumed prefix dropped while a partial frame stays buffered).
  FrameReader reader;
  const std::string f = frame(std::string(100, 'q'));
  reader.feed(f.data(), 50);
  std::string out;
  bool broken = false;
  std::size_t got = 0;
  for (int i = 0; i < 20000; ++i) {
    reader.feed(f.data() + 50, f.size() - 50);
    reader.feed(f.data(), 50);
    while (reader.next(&out, &broken)) {
      ASSERT_EQ(out, std::string(100, 'q'));
      ++got;
    }
    ASSERT_FALSE(broken);
  }
  EXPECT_EQ(got, 20000u);
}

TEST(ProtocolTest, FrameReaderOversizeFrameIsBroken) {
  FrameReader reader(1024);
  const std::string ok = frame(std::string(1024, 'a'));  // exactly max_frame: fine
  const std::string bad = le32(1025) + "b";
  std::string stream = ok + bad;
  reader.feed(stream.data(), stream.size());
  std::string out;
  bool broken = false;
  ASSERT_TRUE(reader.next(&out, &broken));
  EXPECT_EQ(out.size(), 1024u);
  EXPECT_FALSE(broken);
  EXPECT_FALSE(reader.next(&out, &broken));
  EXPECT_TRUE(broken);
  // It stays broken; more data does not resynchronise the stream.
  const std::string more = frame("x");
  reader.feed(more.data(), more.size());
  broken = false;
  EXPECT_FALSE(reader.next(&out, &broken));
  EXPECT_TRUE(broken);

  // The default limit (2 GiB) refuses a 4 GiB - 1 length prefix as soon as it is seen,
  // before any body arrives.
  FrameReader huge;
  const std::string prefix = le32(0xffffffffu);
  huge.feed(prefix.data(), prefix.size());
  broken = false;
  EXPECT_FALSE(huge.next(&out, &broken));
  EXPECT_TRUE(broken);
  // A length within the limit just waits for its body.
  FrameReader waiting;
  const std::string pending = le32(1u << 30);
  waiting.feed(pending.data(), pending.size());
  broken = true;
  EXPECT_FALSE(waiting.next(&out, &broken));
  EXPECT_FALSE(broken);
}

}  // namespace
