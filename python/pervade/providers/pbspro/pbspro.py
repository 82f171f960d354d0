"""Parsl's parsl.providers.pbspro.pbspro: PBSProProvider (defined in pervade.providers)."""

from .. import PBSProProvider

__all__ = ["PBSProProvider"]
