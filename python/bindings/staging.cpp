// pervade._native.staging_fetch: the C++ transfers of pervade.data_provider.transfer (docs/staging.md).
// The transfer runs without the GIL; progress lines take it for the moment they are logged.
#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>

#include "bindings.hpp"
#include "pervade/staging.hpp"

namespace nb = nanobind;

namespace pervade::bindings {

void bind_staging(nb::module_& m) {
  m.def(
      "staging_fetch",
      [](const std::string& url, const std::string& path, const std::string& checksum, double timeout,
         const std::string& cache_dir, std::uint64_t cache_limit, int max_parallel, double progress_interval,
         nb::object log) {
        staging::FetchOptions o;
        o.checksum = checksum;
        o.timeout = timeout;
        o.cache_dir = cache_dir;
        o.cache_limit = cache_limit;
        o.max_parallel = max_parallel;
        o.progress_interval = progress_interval;
        if (!log.is_none()) {
          o.log = [&log](const std::string& line) {
            nb::gil_scoped_acquire gil;
            log(line);
          };
        }
        staging::FetchResult r;
        {
          nb::gil_scoped_release unlocked;
          r = staging::fetch(url, path, o);
        }
        return nb::make_tuple(r.ok, r.error, r.from_cache, r.bytes, r.sha256);
      },
      nb::arg("url"), nb::arg("path"), nb::arg("checksum"), nb::arg("timeout"), nb::arg("cache_dir"),
      nb::arg("cache_limit"), nb::arg("max_parallel"), nb::arg("progress_interval"), nb::arg("log").none(),
      "Fetches url to path (see pervade/staging.hpp): (ok, error, from_cache, bytes, sha256).");
}

}  // namespace pervade::bindings
