// A small workflow with the native C++ API: fan out callables, reduce them, and chain shell
// commands through files. Usage: pipeline <work-dir>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numeric>

#include <pervade/pervade.hpp>

int main(int argc, char** argv) {
  const std::filesystem::path work = argc > 1 ? argv[1] : "pipeline_work";
  std::filesystem::create_directories(work);

  pervade::DataFlowKernel dfk(pervade::Config{.executors = {std::make_shared<pervade::ThreadPoolExecutor>(2)}});

  // Fan out: 1000 squares; reduce: one task that depends on all of them through a join.
  std::vector<pervade::Future<long>> squares;
  for (long i = 0; i < 1000; ++i) squares.push_back(dfk.submit([](long x) { return x * x; }, i));
  long sum = 0;
  for (auto& f : squares) sum += f.get();
  std::printf("sum of squares = %ld\n", sum);

  // Shell stages chained by dependencies: write, then transform.
  auto numbers = work / "numbers.txt";
  auto sorted = work / "sorted.txt";
  auto write = dfk.submit(pervade::Shell{"seq 10 -1 1 > " + numbers.string()});
  auto sort = dfk.submit(pervade::Shell{"sort -n " + numbers.string() + " > " + sorted.string()}, write);
  auto count = dfk.submit(
      [sorted](int) {
        std::ifstream in(sorted);
        long lines = 0;
        for (std::string l; std::getline(in, l);) ++lines;
        return lines;
      },
      sort);
  std::printf("sorted lines = %ld\n", count.get());

  // Errors travel through futures.
  auto failing = dfk.submit(pervade::Shell{"exit 2"});
  try {
    failing.get();
  } catch (const pervade::BashExitFailure& e) {
    std::printf("caught: %s\n", e.what());
  }
  dfk.cleanup();
  return 0;
}
