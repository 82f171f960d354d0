"""Parsl's parsl.monitoring.radios.base: the base class of radio configurations."""

from __future__ import annotations

from ...utils import RepresentationMixin


class RadioConfig(RepresentationMixin):
    """How an executor's workers would send monitoring messages in Parsl. pervade accepts any
    radio (Parsl's or a user's subclass) and carries monitoring over its own pool link whatever
    the radio (see pervade.monitoring.radios); the object only records the user's choice."""
