"""The logging cost on threads: the default logging (initialize_logging=True), the per-task
DEBUG lines too (FileLogging(level=DEBUG)) or none, chosen by PERVADE_PERF_LOGGING=on|debug|off
(docs/logging.md, "Cost").

PERVADE_PERF_LOGGING=on pervade perf --config benchmarks/configs/logging_threads.py --iterate 20000,20000 --time 2
"""
import logging
import os

import pervade as parsl
from pervade.logconfigs.file import FileLogging

LOGGING = {"on": True, "off": False, "debug": FileLogging(level=logging.DEBUG)}

config = parsl.Config(executors=[parsl.ThreadPoolExecutor(max_threads=2)], run_dir="/tmp/pervade-perf-runinfo",
                      initialize_logging=LOGGING[os.environ.get("PERVADE_PERF_LOGGING", "on")])
