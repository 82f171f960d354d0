"""Parsl's parsl.dataflow: the DataFlowKernel (dflow) and what belongs to it."""

from .dflow import DataFlowKernel, DataFlowKernelLoader, clear, dfk, load, wait_for_current_tasks

__all__ = ["DataFlowKernel", "DataFlowKernelLoader", "clear", "dfk", "load", "wait_for_current_tasks"]

# parsl.<package>.<submodule> without importing it first (_submodules.py)
from .._submodules import submodule_getattr  # noqa: E402
__getattr__ = submodule_getattr(__name__)
del submodule_getattr
