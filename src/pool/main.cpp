// pervade-pool: see pool.hpp.
#include <cstdio>
#include <exception>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "pool/pool.hpp"

int main(int argc, char** argv) {
  using namespace pervade::pool;
#if defined(__GLIBC__)
  // Task payloads of a megabyte or more pass through the pool one after another: keep them on
  // the heap instead of a fresh mmap (page faults, zeroed pages) and munmap for each.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 128 << 20);
#endif
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
