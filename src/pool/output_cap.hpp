#pragma once
// Caps what the pool keeps of its own and its tasks' output (stdout and stderr, which workers
// and shell tasks inherit: the block log). A task printing 100 MB must not make a 100 MB log
// in the run directory. The pool's stdout and stderr become pipes that one thread copies to
// the original files; a file that reaches the limit is rotated (renamed to NAME.1, replacing
// an older one, and started afresh), so at most twice the limit is kept, with the latest
// output. An output that is not a regular file with a name (a pipe, a socket) keeps its first
// `limit` bytes; a terminal or /dev/null is left alone.
// Made and finished by run_pool's thread only.
#include <cstdint>
#include <memory>

namespace pervade::pool {

constexpr std::uint64_t kDefaultLogLimit = std::uint64_t{16} << 20;  // bytes per file

class OutputCap {
 public:
  // Interposes on file descriptors 1 and 2 (once when both are the same file); limit 0 does
  // nothing. On failure (no pipe, no thread) the output stays uncapped: a pool must not fail
  // for its log.
  explicit OutputCap(std::uint64_t limit);
  ~OutputCap();  // finish()
  OutputCap(const OutputCap&) = delete;
  OutputCap& operator=(const OutputCap&) = delete;

  // Points 1 and 2 back at the files and copies what is still in the pipes (for at most a
  // second: a process the pool started may keep a pipe open).
  void finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pervade::pool
