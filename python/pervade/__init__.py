"""pervade: Parsl's parallel programming model on a C++20 engine.

A Parsl script runs unchanged after `import pervade as parsl`:

    import pervade as parsl
    from pervade import python_app

    @python_app
    def double(x):
        return 2 * x

    with parsl.load(parsl.Config(executors=[parsl.ThreadPoolExecutor(max_threads=4)])):
        print(double(21).result())   # 42
"""

from .app.app import AUTO_LOGNAME, bash_app, join_app, python_app
from .config import Config
from .data import DataFuture, File
from .dataflow import DataFlowKernel, DataFlowKernelLoader, clear, dfk, load, wait_for_current_tasks
from .errors import (AppBadFormatting, AppException, AppTimeout, BadCheckpoint, BadStateException, BadStdStreamFile, BashAppNoReturn,
                     BashExitFailure, ConfigurationError, DataFlowKernelClosed, DependencyError, ExecutorError,
                     JoinError, ManagerLost, MissingOutputs, NoDataFlowKernelError, ParslError, RemoteError,
                     TaskCancelled, WorkerLost)
from .executors import HighThroughputExecutor, MPIExecutor, ThreadPoolExecutor, WorkQueueExecutor
from .launchers import (AprunLauncher, GnuParallelLauncher, JsrunLauncher, MpiExecLauncher, MpiRunLauncher,
                        SimpleLauncher, SingleNodeLauncher, SrunLauncher, SrunMPILauncher, WrappedLauncher)
from .providers import (CondorProvider, GridEngineProvider, LocalProvider, LSFProvider, PBSProProvider,
                        SlurmProvider, TorqueProvider)
from .futures import AppFuture
from .log_utils import set_file_logger, set_stream_logger
from .memoization import BasicMemoizer, get_all_checkpoints, get_last_checkpoint, id_for_memo
from .monitoring import MonitoringHub
from .progress import progress
from . import utils  # parsl.utils.get_all_checkpoints, as scripts call it
from .version import VERSION

__version__ = VERSION

__all__ = [
    "AUTO_LOGNAME", "python_app", "bash_app", "join_app", "Config", "File", "DataFuture", "AppFuture",
    "DataFlowKernel", "DataFlowKernelLoader", "load", "clear", "dfk", "wait_for_current_tasks",
    "set_stream_logger", "set_file_logger", "BasicMemoizer", "get_all_checkpoints", "get_last_checkpoint", "id_for_memo",
    "ThreadPoolExecutor", "HighThroughputExecutor", "MPIExecutor", "WorkQueueExecutor", "LocalProvider", "SlurmProvider", "PBSProProvider", "TorqueProvider",
    "LSFProvider", "GridEngineProvider", "CondorProvider", "SimpleLauncher", "SingleNodeLauncher", "WrappedLauncher",
    "SrunLauncher", "SrunMPILauncher", "AprunLauncher", "JsrunLauncher", "MpiExecLauncher", "MpiRunLauncher",
    "GnuParallelLauncher",
    "ParslError", "ConfigurationError", "NoDataFlowKernelError", "DataFlowKernelClosed",
    "AppException", "AppTimeout", "AppBadFormatting", "BashExitFailure", "BashAppNoReturn", "MissingOutputs",
    "BadStdStreamFile", "BadCheckpoint", "DependencyError", "JoinError", "ExecutorError", "BadStateException", "WorkerLost", "ManagerLost", "RemoteError",
    "TaskCancelled",
    "MonitoringHub",
    "progress",
]

# parsl.<package>.<submodule> without importing it first (_submodules.py)
from ._submodules import submodule_getattr  # noqa: E402
__getattr__ = submodule_getattr(__name__)
del submodule_getattr
