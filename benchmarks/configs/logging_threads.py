"""The logging cost on threads: the default logging (initialize_logging=True) or none, chosen
by PERVADE_PERF_LOGGING=on|off (docs/logging.md, "Cost").

PERVADE_PERF_LOGGING=on pervade perf --config benchmarks/configs/logging_threads.py --iterate 20000,20000 --time 2
"""
import os

import pervade as parsl

config = parsl.Config(executors=[parsl.ThreadPoolExecutor(max_threads=2)], run_dir="/tmp/pervade-perf-runinfo",
                      initialize_logging=os.environ.get("PERVADE_PERF_LOGGING", "on") == "on")
