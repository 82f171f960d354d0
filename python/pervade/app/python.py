"""Parsl's parsl.app.python: the python_app class (defined in pervade.app.app)."""

from .app import PythonApp

__all__ = ["PythonApp"]
