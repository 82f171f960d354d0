"""Parsl's parsl.providers.slurm.slurm: SlurmProvider (defined in pervade.providers)."""

from .. import SlurmProvider

__all__ = ["SlurmProvider"]
