"""Parsl's parsl.executors.taskvine, which pervade does not have: the names import so that
configs naming TaskVine load up to making the executor, which raises OptionalModuleMissing, as
Parsl does without the taskvine module (the manager and factory configs only hold their options)."""

from ..._unavailable import unavailable
from .. import ParslExecutor

__all__ = ["TaskVineExecutor", "TaskVineManagerConfig", "TaskVineFactoryConfig"]

TaskVineExecutor = unavailable(ParslExecutor, "TaskVineExecutor", ["taskvine"], __name__)


class _Options:
    """Keyword options kept as attributes (Parsl's are dataclasses read by the executor)."""

    def __init__(self, **options):
        self.__dict__.update(options)


class TaskVineManagerConfig(_Options):
    """Parsl's TaskVine manager options (port, project_name, ...), held for a TaskVineExecutor."""


class TaskVineFactoryConfig(_Options):
    """Parsl's TaskVine worker factory options, held for a TaskVineExecutor."""

# parsl.<package>.<submodule> without importing it first (_submodules.py)
from ..._submodules import submodule_getattr  # noqa: E402
__getattr__ = submodule_getattr(__name__)
del submodule_getattr
