#pragma once
// The messages between the ranks of pervade-exex-pool (docs/mpi.md, "One pool per block"), as
// bytes: MPI only carries them (exex_link.hpp). Rank 0 holds the pool; each other rank runs
// its node's workers and relays their byte streams, unparsed, as `data` messages.
// I/O-free; any thread.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pervade::pool::exex {

enum class Type : std::uint8_t {
  hello = 1,  // rank k -> 0 at start: a = workers, b = CPUs, c = memory MB, strings = {host}
  start,      // 0 -> k: start worker `slot`; strings = argv, then the variables (b of them, "K=V") set over k's environment
  started,    // k -> 0: a = its pid
  data,       // both ways: bytes of worker `slot`'s stream (after the header)
  signal,     // 0 -> k: a = signal to the worker's process group; b = 1: stop its bash commands too
  exited,     // k -> 0: worker `slot` ended; strings = {how}
  alive,      // both ways, every heartbeat period without other messages
  stop,       // 0 -> k: stop the workers and answer `stopped`; a = 1: then call MPI_Finalize
  stopped,    // k -> 0
};

struct Message {
  Type type = Type::alive;
  std::uint32_t slot = 0;  // the worker's index on its rank
  std::int64_t a = 0, b = 0, c = 0;
  std::vector<std::string> strings;
  std::string_view data;  // type data: the stream's bytes (points into the decoded buffer)
};

// A whole message. Data messages are better built with data_header() + the bytes.
std::string encode(const Message& m);
// The header of a data message for `slot`, to which the stream's bytes are appended.
std::string data_header(std::uint32_t slot);
constexpr std::size_t kDataHeaderSize = 1 + 4 + 3 * 8 + 4;
// nullopt when `bytes` is not a well-formed message.
std::optional<Message> decode(std::string_view bytes);

}  // namespace pervade::pool::exex
