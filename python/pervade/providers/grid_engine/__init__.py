"""Parsl's parsl.providers.grid_engine package (grid_engine.py)."""
