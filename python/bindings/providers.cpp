// pervade._native's providers and launchers: the C++ objects behind the Python config classes
// of pervade.providers / pervade.launchers. Each Python class builds its native object with one
// factory function here; executors take the provider object. The methods release the GIL:
// scheduler commands and cancellations block.
#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "bindings.hpp"
#include "pervade/provider.hpp"

namespace nb = nanobind;
using namespace pervade;

namespace pervade::bindings {
namespace {

ProviderOptions provider_options(int nodes_per_block, int init_blocks, int min_blocks, int max_blocks,
                                 double parallelism, const std::string& worker_init,
                                 std::shared_ptr<Launcher> launcher, double cmd_timeout) {
  ProviderOptions o;
  o.nodes_per_block = nodes_per_block;
  o.init_blocks = init_blocks;
  o.min_blocks = min_blocks;
  o.max_blocks = max_blocks;
  o.parallelism = parallelism;
  o.worker_init = worker_init;
  o.launcher = std::move(launcher);
  o.cmd_timeout = cmd_timeout;
  return o;
}

}  // namespace

void bind_providers(nb::module_& m) {
  nb::class_<Launcher>(m, "Launcher")
      .def_prop_ro("name", [](const Launcher& l) { return std::string(l.name()); })
      .def("wrap", &Launcher::wrap, nb::arg("command"), nb::arg("tasks_per_node"), nb::arg("nodes_per_block"));
  m.def("simple_launcher", []() -> std::shared_ptr<Launcher> { return std::make_shared<SimpleLauncher>(); });
  m.def(
      "single_node_launcher",
      [](bool fail_on_any) -> std::shared_ptr<Launcher> { return std::make_shared<SingleNodeLauncher>(fail_on_any); },
      nb::arg("fail_on_any"));

  nb::class_<Provider>(m, "Provider")
      .def_prop_ro("label", &Provider::label)
      .def(
          "submit",
          [](Provider& p, const std::string& command, int tasks_per_node, const std::string& job_name,
             const std::string& log_path) {
            nb::gil_scoped_release release;
            return p.submit(command, tasks_per_node, job_name, log_path);
          },
          nb::arg("command"), nb::arg("tasks_per_node"), nb::arg("job_name"), nb::arg("log_path"))
      .def(
          "status",
          [](Provider& p, const std::vector<std::string>& job_ids) {
            std::vector<JobStatus> states;
            {
              nb::gil_scoped_release release;
              states = p.status(job_ids);
            }
            // (state number, message, exit code or None, log path): pervade.providers makes JobStatus objects.
            nb::list out;
            for (const auto& s : states)
              out.append(nb::make_tuple(static_cast<int>(s.state), s.message, s.exit_code, s.log_path));
            return out;
          },
          nb::arg("job_ids"))
      .def(
          "cancel",
          [](Provider& p, const std::vector<std::string>& job_ids) {
            nb::gil_scoped_release release;
            return p.cancel(job_ids);
          },
          nb::arg("job_ids"));

  m.def(
      "local_provider",
      [](int nodes_per_block, int init_blocks, int min_blocks, int max_blocks, double parallelism,
         const std::string& worker_init, std::shared_ptr<Launcher> launcher, double cmd_timeout,
         double cancel_grace) -> std::shared_ptr<Provider> {
        return std::make_shared<LocalProvider>(provider_options(nodes_per_block, init_blocks, min_blocks, max_blocks,
                                                                parallelism, worker_init, std::move(launcher),
                                                                cmd_timeout),
                                               std::chrono::duration<double>(cancel_grace));
      },
      nb::arg("nodes_per_block"), nb::arg("init_blocks"), nb::arg("min_blocks"), nb::arg("max_blocks"),
      nb::arg("parallelism"), nb::arg("worker_init"), nb::arg("launcher"), nb::arg("cmd_timeout"),
      nb::arg("cancel_grace"));
}

}  // namespace pervade::bindings
