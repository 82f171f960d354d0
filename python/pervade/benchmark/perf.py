"""Parsl's parsl.benchmark.perf, the module behind the parsl-perf command: `pervade run -m
parsl.benchmark.perf --config config.py --time 10` (or `pervade perf ...`) runs pervade's perf
(pervade/perf.py), which takes parsl-perf's options (--config, --resources, --time, --iterate)."""

import sys

from ..perf import main


def cli_run() -> None:
    """parsl-perf's entry point."""
    sys.exit(main())


if __name__ == "__main__":
    cli_run()
