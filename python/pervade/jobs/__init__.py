"""Parsl's parsl.jobs: the states of blocks (states.py), block error handlers (error_handlers.py),
the Strategy class (strategy.py) and their error (errors.py)."""
