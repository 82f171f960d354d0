"""Parsl's parsl.providers.pbspro package (pbspro.py)."""
