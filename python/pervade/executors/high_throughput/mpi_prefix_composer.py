"""Parsl's parsl.executors.high_throughput.mpi_prefix_composer: MPI mode's resource-spec check
and launch prefixes (docs/mpi.md). Pools compose the prefixes of running tasks in C++
(src/pool/mpi_nodes.cpp); these functions are the same code, for Parsl's API."""

from __future__ import annotations

import logging

from ... import _native
from ...errors import InvalidResourceSpecification
from ...serialize import HTEX_RESOURCE_KEYS, MPI_RESOURCE_KEYS, mpi_request

logger = logging.getLogger(__name__)

VALID_LAUNCHERS = ("srun", "aprun", "mpiexec")


def validate_resource_spec(resource_spec: dict) -> None:
    """Parsl's MPI-mode check: a spec is required, its keys among num_nodes, ranks_per_node,
    num_ranks, launcher_options (pervade also takes priority), with values that make sense.
    Raises InvalidResourceSpecification naming the keys."""
    if not resource_spec:
        raise InvalidResourceSpecification(set(), "MPI mode requires optional parsl_resource_specification keyword "
                                                  "argument to be configured")
    invalid = set(resource_spec) - MPI_RESOURCE_KEYS - HTEX_RESOURCE_KEYS
    if invalid:
        raise InvalidResourceSpecification(invalid)
    mpi_request(resource_spec)


def _ranks(resource_spec: dict, node_count: int):
    nodes, per_node, ranks, options = mpi_request({**resource_spec, "num_nodes": node_count})
    return ranks, per_node, options


def compose_mpiexec_launch_cmd(resource_spec: dict, node_hostnames: list) -> tuple:
    """("PARSL_MPIEXEC_PREFIX", "mpiexec -n R -ppn P -hosts a,b <launcher_options>")."""
    ranks, per_node, options = _ranks(resource_spec, len(node_hostnames))
    return "PARSL_MPIEXEC_PREFIX", _native.mpiexec_prefix(ranks, per_node, ",".join(node_hostnames), options)


def compose_srun_launch_cmd(resource_spec: dict, node_hostnames: list) -> tuple:
    """("PARSL_SRUN_PREFIX", "srun --ntasks R --ntasks-per-node P --nodelist a,b --nodes N <launcher_options>")."""
    ranks, per_node, options = _ranks(resource_spec, len(node_hostnames))
    return "PARSL_SRUN_PREFIX", _native.srun_prefix(ranks, per_node, len(node_hostnames), ",".join(node_hostnames),
                                                    options)


def compose_aprun_launch_cmd(resource_spec: dict, node_hostnames: list) -> tuple:
    """("PARSL_APRUN_PREFIX", "aprun -n R -N P -node-list a,b <launcher_options>")."""
    ranks, per_node, options = _ranks(resource_spec, len(node_hostnames))
    return "PARSL_APRUN_PREFIX", _native.aprun_prefix(ranks, per_node, ",".join(node_hostnames), options)


def compose_all(mpi_launcher: str, resource_spec: dict, node_hostnames: list) -> dict:
    """The three prefixes, and PARSL_MPI_PREFIX as the one of `mpi_launcher`."""
    if mpi_launcher not in VALID_LAUNCHERS:
        raise RuntimeError(f"Unknown mpi_launcher:{mpi_launcher}")
    table = dict(composer(resource_spec, node_hostnames) for composer in
                 (compose_aprun_launch_cmd, compose_srun_launch_cmd, compose_mpiexec_launch_cmd))
    table["PARSL_MPI_PREFIX"] = table[f"PARSL_{mpi_launcher.upper()}_PREFIX"]
    return table
