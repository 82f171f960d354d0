"""Parsl's parsl.app: the app decorators (app.py) and the app classes."""
