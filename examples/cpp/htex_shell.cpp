// Shell commands on a HighThroughputExecutor from C++: the executor starts one block of
// pervade-pool through a LocalProvider; the pool runs the commands itself (no Python).
// Usage: htex_shell <work-dir>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <pervade/pervade.hpp>

int main(int argc, char** argv) {
  const std::filesystem::path work = std::filesystem::absolute(argc > 1 ? argv[1] : "htex_work");
  std::filesystem::create_directories(work);

  pervade::HtexOptions options;
  options.label = "htex";
  options.provider = std::make_shared<pervade::LocalProvider>(pervade::ProviderOptions{.init_blocks = 1});
  options.workers_per_node = 2;
  options.run_dir = (work / "runinfo").string();  // block logs and the CurveZMQ key file
  auto htex = std::make_shared<pervade::HighThroughputExecutor>(options);
  pervade::DataFlowKernel dfk(pervade::Config{.executors = {htex}});

  // Two stages chained by a dependency, each a command on the pool.
  const auto words = work / "words.txt", counted = work / "counted.txt";
  auto write = dfk.submit(pervade::Shell{"printf 'b\\na\\nb\\n' > " + words.string()});
  auto count = dfk.submit(pervade::Shell{"sort " + words.string() + " | uniq -c | wc -l > " + counted.string()}, write);
  count.get();
  std::ifstream in(counted);
  int distinct = 0;
  in >> distinct;
  std::printf("distinct words = %d\n", distinct);
  for (const auto& b : htex->blocks())
    std::printf("block %s: job %s %s\n", b.block_id.c_str(), b.job_id.c_str(),
                std::string(pervade::to_string(b.status.state)).c_str());

  try {
    dfk.submit(pervade::Shell{"exit 3"}).get();
  } catch (const pervade::BashExitFailure& e) {
    std::printf("caught: %s\n", e.what());
  }
  dfk.cleanup();  // tells the pool to stop, then cancels the block
  return 0;
}
