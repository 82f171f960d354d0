"""Parsl's parsl.providers.slurm package (slurm.py)."""
