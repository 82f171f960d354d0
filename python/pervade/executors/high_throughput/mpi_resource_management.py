"""Parsl's parsl.executors.high_throughput.mpi_resource_management: finding the nodes of the
batch job this process runs in. A pool in MPI mode finds its block's nodes the same way, in C++
(src/pool/mpi_discovery.cpp, docs/mpi.md), and also reads how many cores each has."""

from __future__ import annotations

import os
import subprocess
from enum import Enum


class Scheduler(Enum):
    Unknown = 0
    Slurm = 1
    PBS = 2


def get_slurm_hosts_list() -> list:
    """The job's nodes: SLURM_NODELIST expanded by `scontrol show hostnames`."""
    output = subprocess.check_output(["scontrol", "show", "hostnames", os.environ.get("SLURM_NODELIST", "")],
                                     stderr=subprocess.STDOUT)
    return output.decode().split()


def get_pbs_hosts_list() -> list:
    """The lines of $PBS_NODEFILE (a host once per slot it has, as PBS writes them)."""
    with open(os.environ["PBS_NODEFILE"]) as f:
        return [line.strip() for line in f if line.strip()]


def identify_scheduler() -> Scheduler:
    if os.environ.get("SLURM_NODELIST"):
        return Scheduler.Slurm
    if os.environ.get("PBS_NODEFILE"):
        return Scheduler.PBS
    return Scheduler.Unknown


def get_nodes_in_batchjob(scheduler: Scheduler) -> list:
    if scheduler == Scheduler.Slurm:
        return get_slurm_hosts_list()
    if scheduler == Scheduler.PBS:
        return get_pbs_hosts_list()
    raise RuntimeError(f"mpi_mode does not support scheduler:{scheduler}")
