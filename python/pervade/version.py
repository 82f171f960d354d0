"""pervade's version: the one place it is written (pyproject.toml and CMakeLists.txt read it)."""

VERSION = "0.1.0"
