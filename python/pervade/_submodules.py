"""Submodules as attributes of their package, as Parsl's eager imports make them.

After `import parsl`, Parsl scripts write `parsl.app.errors.AppTimeout` or
`parsl.providers.slurm.slurm.SlurmProvider` without importing those modules: Parsl's
packages import them while they load. pervade imports less up front (import time), so each
package answers an attribute it lacks by importing its submodule of that name (PEP 562):

    __getattr__ = submodule_getattr(__name__)    # at the end of a package's __init__.py
"""

import importlib


def submodule_getattr(package: str):
    def __getattr__(name: str):
        # Only plain public names: dunders and private names are probed by pickle, inspect and
        # copy on every module and must stay a cheap AttributeError.
        if name.isidentifier() and not name.startswith("_"):
            try:
                return importlib.import_module(f"{package}.{name}")
            except ModuleNotFoundError as e:
                if e.name != f"{package}.{name}":
                    raise  # the submodule exists but an import inside it failed: say so
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    return __getattr__
