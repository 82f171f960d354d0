// pervade._native's providers and launchers: the C++ objects behind the Python config classes
// of pervade.providers / pervade.launchers. Each Python class builds its native object with one
// factory function here; executors take the provider object. The methods release the GIL:
// scheduler commands and cancellations block.
#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <fmt/format.h>

#include "bindings.hpp"
#include "pervade/batch_providers.hpp"
#include "pervade/provider.hpp"
#include "pool/mpi_nodes.hpp"

namespace nb = nanobind;
using namespace pervade;

namespace pervade::bindings {
namespace {

// The launchers beyond Simple/SingleNode: one factory each, parameters as in Parsl.
void bind_launchers(nb::module_& m) {
  // MPI mode's launch prefixes, as pools compose them (src/pool/mpi_nodes.hpp; docs/mpi.md).
  m.def("mpiexec_prefix", &pool::mpiexec_prefix, nb::arg("num_ranks"), nb::arg("ranks_per_node"), nb::arg("hosts"),
        nb::arg("options"));
  m.def("srun_prefix", &pool::srun_prefix, nb::arg("num_ranks"), nb::arg("ranks_per_node"), nb::arg("num_nodes"),
        nb::arg("hosts"), nb::arg("options"));
  m.def("aprun_prefix", &pool::aprun_prefix, nb::arg("num_ranks"), nb::arg("ranks_per_node"), nb::arg("hosts"),
        nb::arg("options"));
  using L = std::shared_ptr<Launcher>;
  m.def("wrapped_launcher", [](const std::string& prepend) -> L { return std::make_shared<WrappedLauncher>(prepend); },
        nb::arg("prepend"));
  m.def("srun_launcher", [](const std::string& overrides) -> L { return std::make_shared<SrunLauncher>(overrides); },
        nb::arg("overrides"));
  m.def("srun_mpi_launcher",
        [](const std::string& overrides) -> L { return std::make_shared<SrunMPILauncher>(overrides); },
        nb::arg("overrides"));
  m.def("aprun_launcher", [](const std::string& overrides) -> L { return std::make_shared<AprunLauncher>(overrides); },
        nb::arg("overrides"));
  m.def("jsrun_launcher", [](const std::string& overrides) -> L { return std::make_shared<JsrunLauncher>(overrides); },
        nb::arg("overrides"));
  m.def(
      "mpiexec_launcher",
      [](const std::string& bind_cmd, const std::string& overrides) -> L {
        return std::make_shared<MpiExecLauncher>(bind_cmd, overrides);
      },
      nb::arg("bind_cmd"), nb::arg("overrides"));
  m.def(
      "mpirun_launcher",
      [](const std::string& bash_location, const std::string& overrides) -> L {
        return std::make_shared<MpiRunLauncher>(bash_location, overrides);
      },
      nb::arg("bash_location"), nb::arg("overrides"));
  m.def("gnu_parallel_launcher", []() -> L { return std::make_shared<GnuParallelLauncher>(); });
}

// The batch providers: their option structs with read-write fields (the Python classes fill
// them), one factory each taking the common ProviderOptions and the scheduler's options.
void bind_batch_providers(nb::module_& m) {
  nb::class_<ProviderOptions>(m, "ProviderOptions")
      .def(nb::init<>())
      .def_rw("nodes_per_block", &ProviderOptions::nodes_per_block)
      .def_rw("init_blocks", &ProviderOptions::init_blocks)
      .def_rw("min_blocks", &ProviderOptions::min_blocks)
      .def_rw("max_blocks", &ProviderOptions::max_blocks)
      .def_rw("parallelism", &ProviderOptions::parallelism)
      .def_rw("worker_init", &ProviderOptions::worker_init)
      .def_rw("launcher", &ProviderOptions::launcher)
      .def_rw("cmd_timeout", &ProviderOptions::cmd_timeout)
      .def_rw("script_dir", &ProviderOptions::script_dir);

  nb::class_<BatchProvider, Provider>(m, "BatchProvider")
      .def("job_script", &BatchProvider::job_script, nb::arg("command"), nb::arg("tasks_per_node"),
           nb::arg("job_name"), nb::arg("log_path"))
      .def_prop_ro("walltime", &BatchProvider::walltime)
      // runner(command_line, timeout) -> (exit code, stdout, stderr), or None to let the
      // provider spawn the command (so does the provider while the interpreter exits).
      .def(
          "set_command_runner",
          [](BatchProvider& p, nb::object runner) {
            auto python = std::make_shared<OwnedPython>(runner);
            p.set_command_runner([python](const std::string& line, double timeout)
                                     -> std::optional<BatchProvider::CommandOutput> {
              std::optional<BatchProvider::CommandOutput> out;
              with_python([&] {
                nb::object r = python->get()(line, timeout);
                if (r.is_none()) return;
                std::tuple<int, std::string, std::string> t;
                if (!nb::try_cast(r, t))
                  throw Error(fmt::format("execute_wait('{}') must return (exit code, stdout, stderr), got {}", line,
                                          nb::cast<std::string>(nb::repr(r))));
                out = BatchProvider::CommandOutput{std::get<0>(t), std::move(std::get<1>(t)), std::move(std::get<2>(t))};
              });
              return out;
            });
          },
          nb::arg("runner"))
      // [(job id, stdout path, stderr path, script path, (state, message, exit code, log path))]
      .def("jobs", [](const BatchProvider& p) {
        std::vector<BatchProvider::SubmittedJob> jobs;
        {
          nb::gil_scoped_release release;
          jobs = p.jobs();
        }
        nb::list out;
        for (const auto& j : jobs)
          out.append(nb::make_tuple(j.id, j.files.stdout_path, j.files.stderr_path, j.files.script_path,
                                    nb::make_tuple(static_cast<int>(j.status.state), j.status.message,
                                                   j.status.exit_code, j.status.log_path)));
        return out;
      });

  nb::class_<SlurmOptions>(m, "SlurmOptions")
      .def(nb::init<>())
      .def_rw("partition", &SlurmOptions::partition)
      .def_rw("account", &SlurmOptions::account)
      .def_rw("qos", &SlurmOptions::qos)
      .def_rw("constraint", &SlurmOptions::constraint)
      .def_rw("clusters", &SlurmOptions::clusters)
      .def_rw("cores_per_node", &SlurmOptions::cores_per_node)
      .def_rw("mem_per_node", &SlurmOptions::mem_per_node)
      .def_rw("gpus_per_node", &SlurmOptions::gpus_per_node)
      .def_rw("gres", &SlurmOptions::gres)
      .def_rw("walltime", &SlurmOptions::walltime)
      .def_rw("scheduler_options", &SlurmOptions::scheduler_options)
      .def_rw("regex_job_id", &SlurmOptions::regex_job_id)
      .def_rw("exclusive", &SlurmOptions::exclusive);
  nb::class_<PBSProOptions>(m, "PBSProOptions")
      .def(nb::init<>())
      .def_rw("account", &PBSProOptions::account)
      .def_rw("queue", &PBSProOptions::queue)
      .def_rw("scheduler_options", &PBSProOptions::scheduler_options)
      .def_rw("select_options", &PBSProOptions::select_options)
      .def_rw("cpus_per_node", &PBSProOptions::cpus_per_node)
      .def_rw("walltime", &PBSProOptions::walltime);
  nb::class_<TorqueOptions>(m, "TorqueOptions")
      .def(nb::init<>())
      .def_rw("account", &TorqueOptions::account)
      .def_rw("queue", &TorqueOptions::queue)
      .def_rw("scheduler_options", &TorqueOptions::scheduler_options)
      .def_rw("walltime", &TorqueOptions::walltime);
  nb::class_<LSFOptions>(m, "LSFOptions")
      .def(nb::init<>())
      .def_rw("cores_per_block", &LSFOptions::cores_per_block)
      .def_rw("cores_per_node", &LSFOptions::cores_per_node)
      .def_rw("walltime", &LSFOptions::walltime)
      .def_rw("scheduler_options", &LSFOptions::scheduler_options)
      .def_rw("project", &LSFOptions::project)
      .def_rw("queue", &LSFOptions::queue)
      .def_rw("bsub_redirection", &LSFOptions::bsub_redirection)
      .def_rw("request_by_nodes", &LSFOptions::request_by_nodes);
  nb::class_<GridEngineOptions>(m, "GridEngineOptions")
      .def(nb::init<>())
      .def_rw("walltime", &GridEngineOptions::walltime)
      .def_rw("scheduler_options", &GridEngineOptions::scheduler_options)
      .def_rw("queue", &GridEngineOptions::queue);
  nb::class_<CondorOptions>(m, "CondorOptions")
      .def(nb::init<>())
      .def_rw("cores_per_slot", &CondorOptions::cores_per_slot)
      .def_rw("mem_per_slot", &CondorOptions::mem_per_slot)
      .def_rw("environment", &CondorOptions::environment)
      .def_rw("project", &CondorOptions::project)
      .def_rw("scheduler_options", &CondorOptions::scheduler_options)
      .def_rw("transfer_input_files", &CondorOptions::transfer_input_files)
      .def_rw("walltime", &CondorOptions::walltime)
      .def_rw("requirements", &CondorOptions::requirements);

  // Returned as Provider (the executor's type); job_script is reached through BatchProvider.
  m.def("slurm_provider", [](const ProviderOptions& o, const SlurmOptions& s) -> std::shared_ptr<BatchProvider> {
    return std::make_shared<SlurmProvider>(o, s);
  });
  m.def("pbspro_provider", [](const ProviderOptions& o, const PBSProOptions& s) -> std::shared_ptr<BatchProvider> {
    return std::make_shared<PBSProProvider>(o, s);
  });
  m.def("torque_provider", [](const ProviderOptions& o, const TorqueOptions& s) -> std::shared_ptr<BatchProvider> {
    return std::make_shared<TorqueProvider>(o, s);
  });
  m.def("lsf_provider", [](const ProviderOptions& o, const LSFOptions& s) -> std::shared_ptr<BatchProvider> {
    return std::make_shared<LSFProvider>(o, s);
  });
  m.def("grid_engine_provider",
        [](const ProviderOptions& o, const GridEngineOptions& s) -> std::shared_ptr<BatchProvider> {
          return std::make_shared<GridEngineProvider>(o, s);
        });
  m.def("condor_provider", [](const ProviderOptions& o, const CondorOptions& s) -> std::shared_ptr<BatchProvider> {
    return std::make_shared<CondorProvider>(o, s);
  });
}

// The launcher of a Python provider: wrap() calls the Python launcher, so that its attributes
// count as they are when a block is submitted (Parsl reads them then; a script may change
// WrappedLauncher.prepend between blocks) and Launcher subclasses with their own __call__ work.
// While the interpreter exits, the native launcher made from the attributes at start wraps.
class PythonLauncher final : public Launcher {
 public:
  PythonLauncher(nb::handle python, std::shared_ptr<Launcher> native) : python_(python), native_(std::move(native)) {}

  std::string wrap(const std::string& command, int tasks_per_node, int nodes_per_block) const override {
    std::string out;
    if (!with_python([&] { out = nb::cast<std::string>(python_.get()(command, tasks_per_node, nodes_per_block)); }))
      return native_->wrap(command, tasks_per_node, nodes_per_block);
    return out;
  }
  std::string_view name() const override { return native_->name(); }

 private:
  OwnedPython python_;
  std::shared_ptr<Launcher> native_;
};

// A provider whose Python class overrides submit, status or cancel (Parsl scripts subclass
// LocalProvider to count or alter submissions): the engine's calls go through those methods,
// with the GIL, on the thread that makes them (the strategy thread, cleanup). The overrides
// usually end in the native provider (super().submit(...)). While the interpreter exits the
// calls go to the native provider directly, so that blocks are still cancelled.
class PythonProvider final : public Provider {
 public:
  PythonProvider(nb::handle python, std::shared_ptr<Provider> native)
      : Provider(native->label(), native->options()), python_(python), native_(std::move(native)) {}

  std::string submit(const std::string& command, int tasks_per_node, const std::string& job_name,
                     const std::string& log_path) override {
    std::string job_id;
    if (!with_python([&] {
          nb::object id = python_.get().attr("submit")(command, tasks_per_node, job_name, log_path);
          if (id.is_none()) throw Error("the provider's submit() returned no job id");
          job_id = nb::cast<std::string>(nb::str(id));
        }))
      return native_->submit(command, tasks_per_node, job_name, log_path);
    return job_id;
  }

  std::vector<JobStatus> status(const std::vector<std::string>& job_ids) override {
    std::vector<JobStatus> out;
    if (!with_python([&] {
          for (nb::handle s : python_.get().attr("status")(job_ids)) {
            JobStatus j;
            j.state = static_cast<JobState>(nb::cast<int>(s.attr("state")));
            nb::object message = s.attr("message"), exit_code = s.attr("exit_code");
            if (!message.is_none()) j.message = nb::cast<std::string>(nb::str(message));
            if (!exit_code.is_none()) j.exit_code = nb::cast<int>(exit_code);
            if (nb::hasattr(s, "log_path") && !s.attr("log_path").is_none())
              j.log_path = nb::cast<std::string>(s.attr("log_path"));
            out.push_back(std::move(j));
          }
        }))
      return native_->status(job_ids);
    if (out.size() != job_ids.size())
      throw Error(fmt::format("the provider's status() gave {} states for {} jobs", out.size(), job_ids.size()));
    return out;
  }

  std::vector<bool> cancel(const std::vector<std::string>& job_ids) override {
    std::vector<bool> out;
    if (!with_python([&] {
          nb::object done = python_.get().attr("cancel")(job_ids);
          if (!done.is_none())
            for (nb::handle d : done) out.push_back(nb::cast<bool>(d));
        }))
      return native_->cancel(job_ids);
    out.resize(job_ids.size(), true);  // Parsl's cancel may return nothing
    return out;
  }

 private:
  OwnedPython python_;
  std::shared_ptr<Provider> native_;
};

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
  bind_launchers(m);
  m.def(
      "python_launcher",
      [](nb::object python, std::shared_ptr<Launcher> native) -> std::shared_ptr<Launcher> {
        return std::make_shared<PythonLauncher>(python, std::move(native));
      },
      nb::arg("python"), nb::arg("native"));

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

  bind_batch_providers(m);
  m.def(
      "python_provider",
      [](nb::object python, std::shared_ptr<Provider> native) -> std::shared_ptr<Provider> {
        return std::make_shared<PythonProvider>(python, std::move(native));
      },
      nb::arg("python"), nb::arg("native"));

  m.def(
      "local_provider",
      [](const ProviderOptions& o, double cancel_grace) -> std::shared_ptr<Provider> {
        return std::make_shared<LocalProvider>(o, std::chrono::duration<double>(cancel_grace));
      },
      nb::arg("options"), nb::arg("cancel_grace"));
}

}  // namespace pervade::bindings
