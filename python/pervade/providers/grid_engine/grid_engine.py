"""Parsl's parsl.providers.grid_engine.grid_engine: GridEngineProvider (defined in pervade.providers)."""

from .. import GridEngineProvider

__all__ = ["GridEngineProvider"]
