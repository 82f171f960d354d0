// Checkpoint cost: writes a checkpoint of N memoized results in transactions of `batch` records
// (as task_exit's group commit does), then times a DataFlowKernel start that loads it.
// Usage: checkpoint_restart [dir=/tmp/pervade_ckpt_bench] [records=1000000] [batch=256] [value_bytes=16] [keep]
// ("keep": leave the checkpoint in dir, e.g. to time a Python load() of it).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include "core/memo_store.hpp"
#include "pervade/pervade.hpp"

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : "/tmp/pervade_ckpt_bench";
  const long n = argc > 2 ? std::atol(argv[2]) : 1000000;
  const long batch = argc > 3 ? std::atol(argv[3]) : 256;
  const std::size_t value_bytes = argc > 4 ? std::strtoul(argv[4], nullptr, 10) : 16;
  std::filesystem::remove_all(dir);
  using Clock = std::chrono::steady_clock;
  auto seconds = [](Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); };

  pervade::CheckpointConfig write_cfg;
  write_cfg.memoize = true;
  write_cfg.mode = pervade::CheckpointMode::task_exit;
  write_cfg.dir = dir;
  const auto t0 = Clock::now();
  {
    pervade::detail::MemoStore store(write_cfg);
    std::string key(pervade::kMemoKeySize, '\0');
    for (long i = 0; i < n; ++i) {
      std::memcpy(key.data(), &i, sizeof i);  // distinct keys; the rest of the digest is zero
      key[31] = static_cast<char>(i * 7);
      store.record(pervade::detail::to_memo_key(key), std::string(value_bytes, static_cast<char>('a' + i % 26)));
      if ((i + 1) % batch == 0) store.write();
    }
    store.write();
  }
  const auto t1 = Clock::now();
  std::printf("wrote %ld records (%zu-byte values) in transactions of %ld: %.3f s, %.2f us per record, file %.1f MB\n",
              n, value_bytes, batch, seconds(t0, t1), seconds(t0, t1) / n * 1e6,
              std::filesystem::file_size(pervade::detail::MemoStore::file_in(dir)) / 1e6);

  pervade::Config cfg;
  cfg.checkpoint.memoize = true;
  cfg.checkpoint.files = {dir};
  const auto t2 = Clock::now();
  pervade::DataFlowKernel dfk(std::move(cfg));
  const auto t3 = Clock::now();
  std::printf("DataFlowKernel start loading %ld records: %.3f s\n", n, seconds(t2, t3));
  dfk.cleanup();
  if (!(argc > 5 && std::string(argv[5]) == "keep")) std::filesystem::remove_all(dir);
  return 0;
}
