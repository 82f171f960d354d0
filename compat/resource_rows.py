"""How many `resource` rows Parsl's monitoring writes per task, by task length: the same script on
Parsl and under `pervade run` (docs/monitoring.md, "Resource sampling"):

    PATH=<venv with parsl[monitoring]>/bin:$PATH <that venv>/bin/python compat/resource_rows.py
    python -m pervade run compat/resource_rows.py

Runs 20 no-op tasks, 6 of 10 ms and 4 of 0.5 s on a local HTEX with MonitoringHub (interval 30 s,
Parsl's default) in a fresh temporary run_dir, then prints the rows per task of each kind.
"""
import sqlite3
import tempfile

import parsl
from parsl.config import Config
from parsl.executors import HighThroughputExecutor
from parsl.monitoring import MonitoringHub
from parsl.providers import LocalProvider


@parsl.python_app
def sleepy(seconds):
    import time
    time.sleep(seconds)
    return seconds


if __name__ == "__main__":  # Parsl starts its monitoring processes with spawn
    with tempfile.TemporaryDirectory() as run_dir:
        config = Config(executors=[HighThroughputExecutor(label="htex", max_workers_per_node=2,
                                                          provider=LocalProvider(init_blocks=1))],
                        monitoring=MonitoringHub(resource_monitoring_interval=30), run_dir=run_dir)
        kinds = [(0, 20), (0.01, 6), (0.5, 4)]
        with parsl.load(config):
            ids = {seconds: [f.tid for f in [sleepy(seconds) for _ in range(n)] if f.result() == seconds]
                   for seconds, n in kinds}
        with sqlite3.connect(f"{run_dir}/monitoring.db") as db:
            per_task = dict(db.execute("SELECT task_id, count(*) FROM resource GROUP BY 1"))
        for seconds, n in kinds:
            print(f"tasks of {seconds} s: resource rows per task {sorted(per_task.get(t, 0) for t in ids[seconds])}")
