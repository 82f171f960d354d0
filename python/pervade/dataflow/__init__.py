"""Parsl's parsl.dataflow: the DataFlowKernel (dflow) and what belongs to it."""

from .dflow import DataFlowKernel, DataFlowKernelLoader, clear, dfk, load, wait_for_current_tasks

__all__ = ["DataFlowKernel", "DataFlowKernelLoader", "clear", "dfk", "load", "wait_for_current_tasks"]
