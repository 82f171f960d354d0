// pervade-pool: see pool.hpp.
#include <cstdio>
#include <exception>

#include "pool/pool.hpp"

int main(int argc, char** argv) {
  using namespace pervade::pool;
  ParseResult parsed = parse_command_line(argc, argv);
  if (parsed.help) {
    std::fputs(usage_text().c_str(), stdout);
    return kExitOk;
  }
  if (!parsed.options) {
    std::fprintf(stderr, "pervade-pool: %s\n(see pervade-pool --help)\n", parsed.error.c_str());
    return kExitUsage;
  }
  try {
    return run_pool(std::move(*parsed.options));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pervade-pool: fatal error: %s\n", e.what());
    return kExitError;
  }
}
