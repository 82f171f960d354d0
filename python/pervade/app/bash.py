"""Parsl's parsl.app.bash: the bash_app class (defined in pervade.app.app)."""

from .app import BashApp

__all__ = ["BashApp"]
