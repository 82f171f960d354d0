"""Parsl's parsl.providers.condor package (condor.py)."""
