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
  data,       // both ways: pieces of workers' streams, after the header (see DataBatch)
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
  std::string_view data;  // type data: the pieces (points into the decoded buffer)
};

std::string encode(const Message& m);
constexpr std::size_t kHeaderSize = 1 + 4 + 3 * 8 + 4;  // of a message without strings
// nullopt when `bytes` is not a well-formed message (a data message's pieces are checked by
// next_piece()).
std::optional<Message> decode(std::string_view bytes);

// A data message being built: what each worker's stream gave in one round of a rank's loop, so
// that the round costs one MPI message per peer however many workers it read.
class DataBatch {
 public:
  // Appends bytes of worker `slot`'s stream.
  void append(std::uint32_t slot, std::string_view bytes);
  bool empty() const { return bytes_.empty(); }
  // The message (and a fresh, empty batch).
  std::string take();

 private:
  std::string bytes_;
};

// The next piece of a data message's `rest` (Message::data): false at the end, or, with
// *malformed set, when the rest is not a well-formed piece.
bool next_piece(std::string_view* rest, std::uint32_t* slot, std::string_view* bytes, bool* malformed);

}  // namespace pervade::pool::exex
