"""benchmarks/configs/htex_local.py with the monitoring database on (MonitoringHub, resource
monitoring at Parsl's default interval of 30 s), in a fresh temporary run_dir.

pervade perf --config benchmarks/configs/htex_local_monitoring.py --iterate 2000,10000,10000 --time 2
"""
import tempfile

import pervade as parsl
from pervade.monitoring import MonitoringHub

config = parsl.Config(
    executors=[parsl.HighThroughputExecutor(label="htex", max_workers_per_node=2, prefetch_capacity=64,
                                            provider=parsl.LocalProvider(init_blocks=1))],
    run_dir=tempfile.mkdtemp(prefix="pervade-perf-monitoring-"),
    monitoring=MonitoringHub(resource_monitoring_interval=30),
    initialize_logging=False)
