"""Parsl's parsl.jobs: the states of blocks (states.py)."""
