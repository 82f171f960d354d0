"""Makes `import parsl` and `from parsl.x.y import Z` give pervade's modules (`pervade run`).

`install()` puts a finder at the front of `sys.meta_path` that answers every import of `parsl`
or `parsl.<path>` with the module `pervade.<path>` itself (the same module object under both
names, so `parsl.load is pervade.load` and class identity holds). A parsl module pervade lacks
raises ModuleNotFoundError naming both; nothing is made up in its place. Nothing happens until
`install()` is called: without `pervade run`, `import parsl` finds a real Parsl as usual.

Processes pervade starts inherit the mapping through the environment: `install()` sets
PERVADE_PARSL_IMPORTS=1 and `python -m pervade.worker` calls `install_from_environment()`.
multiprocessing children started with spawn or forkserver (fresh interpreters that get the
parent's sys.path, not its finder; the monitoring radios' receivers are such children) find
pervade/parsl_shim first on sys.path: its `parsl` installs the mapping on the first parsl import.

`parsl_tests` (PERVADE_PARSL_TESTS: the directory of a real Parsl package) keeps `parsl.tests`
and its submodules as that Parsl's own files, run against pervade: how `make compat` runs
Parsl's test suite (docs/compat.md).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import logging
import os
import sys

ENV_ENABLED = "PERVADE_PARSL_IMPORTS"
ENV_TESTS = "PERVADE_PARSL_TESTS"
_PREFIX = "parsl"
_TESTS = "parsl.tests"
_SHIM_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "parsl_shim")


class _AliasLoader(importlib.abc.Loader):
    """Hands out an already imported pervade module under its parsl name."""

    def __init__(self, module):
        self._module = module
        self._spec = module.__spec__

    def create_module(self, spec):
        return self._module

    def exec_module(self, module):
        # The import system stamped the parsl spec on the shared module; pervade keeps its own
        # (pickle, runpy and importlib.reload read it).
        module.__spec__ = self._spec


class ParslAliasFinder(importlib.abc.MetaPathFinder):
    """Answers imports of parsl.* with pervade.* (see the module's doc). Called by the import
    system, under its import lock, from any thread."""

    def __init__(self, parsl_tests: str | None = None):
        self.parsl_tests = parsl_tests

    def find_spec(self, fullname, path=None, target=None):
        if fullname != _PREFIX and not fullname.startswith(_PREFIX + "."):
            return None
        if self.parsl_tests and (fullname == _TESTS or fullname.startswith(_TESTS + ".")):
            # parsl.tests comes from the real Parsl's files; its submodules are found the usual
            # way below parsl.tests.__path__.
            if fullname == _TESTS:
                return importlib.machinery.PathFinder.find_spec(fullname, [self.parsl_tests])
            return None
        target_name = "pervade" + fullname[len(_PREFIX):]
        try:
            module = importlib.import_module(target_name)
        except ModuleNotFoundError as e:
            if e.name is None or not (target_name == e.name or target_name.startswith(e.name + ".")):
                raise  # a module that pervade's module itself needs is missing
            raise ModuleNotFoundError(f"No module named {fullname!r}: pervade has no {target_name!r} "
                                      "(pervade run maps parsl.* to pervade.*; see docs/compat.md)",
                                      name=fullname) from None
        return importlib.util.spec_from_loader(fullname, _AliasLoader(module),
                                               is_package=hasattr(module, "__path__"))


def shown_module(module: str) -> str:
    """The module name a repr gives for a class of pervade's `module`: under `pervade run` (once
    `parsl` is pervade) the parsl name the script imported it by, as Parsl's reprs print it."""
    if module.startswith("pervade.") and "parsl" in sys.modules and sys.modules["parsl"] is sys.modules.get("pervade"):
        return _PREFIX + module[len("pervade"):]
    return module


def installed() -> ParslAliasFinder | None:
    return next((f for f in sys.meta_path if isinstance(f, ParslAliasFinder)), None)


def install(parsl_tests: str | None = None) -> None:
    """Maps parsl.* to pervade.* in this process and, through the environment, in the worker
    processes it starts. A real `parsl` imported before this call is an error: its modules and
    pervade's would mix."""
    loaded = sorted(n for n in sys.modules if n == _PREFIX or n.startswith(_PREFIX + "."))
    if loaded and installed() is None:
        raise RuntimeError(f"parsl is already imported ({', '.join(loaded[:3])}): the parsl → pervade "
                           "mapping must be installed before any parsl import")
    finder = installed()
    if finder is None:
        sys.meta_path.insert(0, ParslAliasFinder(parsl_tests))
        _alias_parsl_logger()
    else:
        finder.parsl_tests = parsl_tests
    if _SHIM_DIR not in sys.path:
        # Never reached here (the finder answers first); ahead of any real Parsl in a spawned child.
        sys.path.insert(0, _SHIM_DIR)
    os.environ[ENV_ENABLED] = "1"
    if parsl_tests:
        os.environ[ENV_TESTS] = parsl_tests
    else:
        os.environ.pop(ENV_TESTS, None)


def _alias_parsl_logger() -> None:
    """logging.getLogger("parsl") gives pervade's package logger, as `import parsl` gives the
    package: a script's `getLogger("parsl").setLevel(...)` or handler then acts on pervade's
    records, and the "parsl" records it logs itself reach set_stream_logger()'s handler. Loggers
    made below it later ("parsl.x") are its children. Nothing is done if the logging module
    already knows the name "parsl" (as a logger, or as the parent of one)."""
    manager = logging.Logger.manager
    if _PREFIX not in manager.loggerDict:
        manager.loggerDict[_PREFIX] = logging.getLogger("pervade")


def install_from_environment() -> None:
    """In a process pervade started (a worker): installs the mapping if the driver had it."""
    if os.environ.get(ENV_ENABLED) == "1":
        install(os.environ.get(ENV_TESTS) or None)


def real_parsl_dir() -> str | None:
    """The directory of the Parsl package an ordinary `import parsl` would load (not pervade's)."""
    spec = importlib.machinery.PathFinder.find_spec(_PREFIX)
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]
