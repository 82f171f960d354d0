"""Parsl's parsl.providers.lsf package (lsf.py)."""
