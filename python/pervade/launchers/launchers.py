"""Launchers: how a block's command starts on the nodes of its block (Parsl's parsl.launchers,
same names and parameters).

Each class is configuration that builds the engine's launcher (include/pervade/launchers.hpp);
calling it returns the shell text that wraps a command, as Parsl's launchers do::

    >>> SrunLauncher(overrides="--cpu-bind=none")("pervade-pool ...", 1, 4)   # doctest: +SKIP
    'export CORES=$SLURM_CPUS_ON_NODE\\n...srun --ntasks 4 -l --cpu-bind=none /bin/bash -c ...'

`debug` is accepted everywhere for compatibility with Parsl configs; it does not change the
generated text.
"""

from __future__ import annotations

from .. import _native
from ..errors import ConfigurationError

__all__ = [
    "Launcher", "SimpleLauncher", "SingleNodeLauncher", "WrappedLauncher", "SrunLauncher", "SrunMPILauncher",
    "AprunLauncher", "JsrunLauncher", "MpiExecLauncher", "MpiRunLauncher", "GnuParallelLauncher",
]


def _check_str(owner: str, name: str, value) -> str:
    if not isinstance(value, str):
        raise ConfigurationError(f"{owner} {name} must be a str, got {value!r}")
    return value


class Launcher:
    """Base of the launchers: builds the native launcher and wraps commands with it.

    A user's subclass that only defines ``__call__(command, tasks_per_node, nodes_per_block)``
    (as Parsl's abstract Launcher asks: a container wrapper, say) works too: each block's
    command is wrapped by calling it.
    """

    def __init__(self, debug: bool = True):
        self.debug = debug

    def _native_launcher(self):
        # For a user's subclass: the engine calls the Python __call__ for each block; this native
        # launcher only stands in while the interpreter exits (no Python can run then).
        return _native.simple_launcher()

    def __call__(self, command: str, tasks_per_node: int, nodes_per_block: int, script_dir: str = "") -> str:
        """The shell text that starts `command` (script_dir is accepted for Parsl's signature; the
        job script tells the launcher its directory through $PERVADE_SCRIPT_DIR)."""
        return self._native_launcher().wrap(command, tasks_per_node, nodes_per_block)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if k != "debug")
        return f"{type(self).__name__}({fields})"


class SimpleLauncher(Launcher):
    """Runs the command once per block, unchanged (the command starts its own processes)."""

    def _native_launcher(self):
        return _native.simple_launcher()


class SingleNodeLauncher(Launcher):
    """Runs tasks_per_node x nodes_per_block copies of the command in parallel on the node the
    block script runs on, and waits for all; the block fails if every copy failed (or, with
    fail_on_any, if any failed). $CORES is the node's CPU count, $1 the copy's number."""

    def __init__(self, debug: bool = True, fail_on_any: bool = False):
        super().__init__(debug)
        self.fail_on_any = fail_on_any

    def _native_launcher(self):
        return _native.single_node_launcher(bool(self.fail_on_any))


class WrappedLauncher(Launcher):
    """Puts `prepend` in front of the command, e.g. ``WrappedLauncher(prepend="time")`` or a
    container runtime (``"docker run --rm -v /work:/work image"``). Runs the command once."""

    def __init__(self, prepend: str, debug: bool = True):
        super().__init__(debug)
        self.prepend = _check_str("WrappedLauncher", "prepend", prepend)

    def _native_launcher(self):
        return _native.wrapped_launcher(self.prepend)


class _OverridesLauncher(Launcher):
    _factory = ""

    def __init__(self, debug: bool = True, overrides: str = ""):
        super().__init__(debug)
        self.overrides = _check_str(type(self).__name__, "overrides", overrides)

    def _native_launcher(self):
        return getattr(_native, self._factory)(self.overrides)


class SrunLauncher(_OverridesLauncher):
    """Slurm: ``srun --ntasks <tasks_per_node*nodes_per_block> -l <overrides>`` inside the job's
    allocation; $CORES and $NODES come from SLURM_CPUS_ON_NODE and SLURM_JOB_NUM_NODES."""

    _factory = "srun_launcher"


class SrunMPILauncher(_OverridesLauncher):
    """Slurm, for blocks running several MPI applications at once: one srun per copy, each with
    an equal share of the allocation (whole nodes with --exclusive when there are at least as
    many nodes as copies). The block fails if any copy fails."""

    _factory = "srun_mpi_launcher"


class AprunLauncher(_OverridesLauncher):
    """Cray ALPS: ``aprun -n <copies> -N <tasks_per_node> <overrides>``."""

    _factory = "aprun_launcher"


class JsrunLauncher(_OverridesLauncher):
    """IBM LSF/CSM (Summit-class machines): ``jsrun -n <copies> -r <tasks_per_node> <overrides>``."""

    _factory = "jsrun_launcher"


class MpiExecLauncher(Launcher):
    """MPICH/Hydra style: ``mpiexec <bind_cmd> none <overrides> -n <copies> --hostfile <file>``,
    the host file being $PBS_NODEFILE without duplicates, or localhost outside PBS."""

    def __init__(self, debug: bool = True, bind_cmd: str = "--bind-to", overrides: str = ""):
        super().__init__(debug)
        self.bind_cmd = _check_str("MpiExecLauncher", "bind_cmd", bind_cmd)
        self.overrides = _check_str("MpiExecLauncher", "overrides", overrides)

    def _native_launcher(self):
        return _native.mpiexec_launcher(self.bind_cmd, self.overrides)


class MpiRunLauncher(Launcher):
    """Open MPI style: ``mpirun -np <copies> <overrides> <bash_location> -c <command>``."""

    def __init__(self, debug: bool = True, bash_location: str = "/bin/bash", overrides: str = ""):
        super().__init__(debug)
        self.bash_location = _check_str("MpiRunLauncher", "bash_location", bash_location)
        self.overrides = _check_str("MpiRunLauncher", "overrides", overrides)

    def _native_launcher(self):
        return _native.mpirun_launcher(self.bash_location, self.overrides)


class GnuParallelLauncher(Launcher):
    """GNU parallel over ssh: runs <copies> of the command, tasks_per_node at a time per node, on
    the nodes of $PBS_NODEFILE (this machine outside PBS). Needs `parallel` on PATH and
    passwordless ssh between the nodes; the environment is copied to remote nodes when
    ``parallel --record-env`` has been run once."""

    def _native_launcher(self):
        return _native.gnu_parallel_launcher()
