"""The logging cost on the HighThroughputExecutor (as htex_local.py): the default logging
(initialize_logging=True), the per-task DEBUG lines too (FileLogging(level=DEBUG)) or none,
chosen by PERVADE_PERF_LOGGING=on|debug|off.

PERVADE_PERF_LOGGING=on pervade perf --config benchmarks/configs/logging_htex.py --iterate 10000,10000 --time 2
"""
import logging
import os

import pervade as parsl
from pervade.logconfigs.file import FileLogging

LOGGING = {"on": True, "off": False, "debug": FileLogging(level=logging.DEBUG)}

config = parsl.Config(
    executors=[parsl.HighThroughputExecutor(label="htex", max_workers_per_node=2, prefetch_capacity=64,
                                            provider=parsl.LocalProvider(init_blocks=1))],
    run_dir="/tmp/pervade-perf-runinfo",
    initialize_logging=LOGGING[os.environ.get("PERVADE_PERF_LOGGING", "on")])
