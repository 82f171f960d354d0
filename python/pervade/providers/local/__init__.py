"""Parsl's parsl.providers.local package (local.py)."""
