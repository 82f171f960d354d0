"""Parsl's parsl.providers.torque.torque: TorqueProvider (defined in pervade.providers)."""

from .. import TorqueProvider

__all__ = ["TorqueProvider"]
