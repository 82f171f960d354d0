"""Parsl's parsl.providers.torque package (torque.py)."""
