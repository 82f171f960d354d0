"""Parsl's parsl.data_provider: File (files.py)."""
