"""Parsl's parsl.executors.high_throughput: HighThroughputExecutor (executor.py)."""
