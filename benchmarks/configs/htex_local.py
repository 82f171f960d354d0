"""HighThroughputExecutor on this machine: one local block, 2 workers, prefetch 64.

pervade perf --config benchmarks/configs/htex_local.py --iterate 2000,10000,10000 --time 2
"""
import pervade as parsl

config = parsl.Config(
    executors=[parsl.HighThroughputExecutor(label="htex", max_workers_per_node=2, prefetch_capacity=64,
                                            provider=parsl.LocalProvider(init_blocks=1))],
    initialize_logging=False)
