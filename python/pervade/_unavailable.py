"""Stand-ins for the executors and providers Parsl's packages export that pervade does not have
(WorkQueueExecutor, FluxExecutor, KubernetesProvider, ...): workflows import them next to the
ones they use (a site module naming every executor it might pick), so the import works; making
one raises OptionalModuleMissing, what Parsl raises on a machine without the module they need."""

from __future__ import annotations

from .errors import OptionalModuleMissing


def unavailable(base: type, name: str, modules: list, module: str) -> type:
    """A subclass of `base` named `name` whose construction raises OptionalModuleMissing(modules)."""

    def __init__(self, *args, **kwargs):
        raise OptionalModuleMissing(modules, f"pervade does not have Parsl's {name} (see pervade's "
                                             "docs/compat.md for the executors and providers it has)")

    doc = f"Parsl's {name}, which pervade does not have: making one raises OptionalModuleMissing."
    return type(name, (base,), {"__init__": __init__, "__doc__": doc, "__module__": module})
