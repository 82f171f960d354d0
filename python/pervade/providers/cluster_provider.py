"""Parsl's parsl.providers.cluster_provider: the batch providers' base (defined in pervade.providers)."""

from . import ClusterProvider

__all__ = ["ClusterProvider"]
