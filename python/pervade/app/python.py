"""Parsl's parsl.app.python: the python_app class (defined in pervade.app.app) and `timeout`."""

from __future__ import annotations

import ctypes
import functools
import threading

from ..errors import AppTimeout
from .app import PythonApp

__all__ = ["PythonApp", "timeout"]


def timeout(f, seconds: float):
    """`f` wrapped so that a call still running after `seconds` gets AppTimeout raised in its
    thread (at its next bytecode, as Parsl's), for code that calls Parsl's helper directly.
    pervade's own `walltime=` does not use it: on threads the engine times the try, and the
    HighThroughputExecutor's workers use a timer signal (pervade.worker), which also stops a call
    blocked in a system call."""

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        ident = threading.get_ident()
        lock = threading.Lock()
        running = True

        def interrupt():
            with lock:
                if running:
                    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(AppTimeout))

        timer = threading.Timer(seconds, interrupt)
        timer.daemon = True
        timer.start()
        try:
            return f(*args, **kwargs)
        finally:
            with lock:
                running = False
                # An AppTimeout set just before f returned must not hit the caller's next line.
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), None)
            timer.cancel()

    return wrapper
