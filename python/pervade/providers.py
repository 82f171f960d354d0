"""Providers get blocks of nodes for executors; launchers start the pool command on them.

LocalProvider runs blocks as processes on this machine (Parsl's name and parameters)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time

from .errors import ConfigurationError

logger = logging.getLogger("pervade.providers")


class SimpleLauncher:
    """Runs the command once per block."""

    def __init__(self, debug: bool = True):
        self.debug = debug

    def __call__(self, command: str, tasks_per_node: int, nodes_per_block: int) -> str:
        return command


class SingleNodeLauncher(SimpleLauncher):
    """Runs the command once per node of the block, in parallel, and waits for all."""

    def __init__(self, debug: bool = True, fail_on_any: bool = False):
        super().__init__(debug)
        self.fail_on_any = fail_on_any

    def __call__(self, command: str, tasks_per_node: int, nodes_per_block: int) -> str:
        if nodes_per_block <= 1:
            return command
        return f"for i in $(seq 1 {nodes_per_block}); do ( {command} ) & done; wait"


class LocalProvider:
    """Blocks are local process trees.

    >>> LocalProvider(init_blocks=1, max_blocks=2, worker_init="source env.sh")
    """

    label = "local"

    def __init__(self, nodes_per_block: int = 1, launcher=None, init_blocks: int = 1, min_blocks: int = 0,
                 max_blocks: int = 1, worker_init: str = "", cmd_timeout: int = 30, parallelism: float = 1,
                 move_files=None):
        for name, value in (("nodes_per_block", nodes_per_block), ("init_blocks", init_blocks),
                            ("min_blocks", min_blocks), ("max_blocks", max_blocks)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigurationError(f"LocalProvider {name} must be an int >= 0, got {value!r}")
        if nodes_per_block < 1:
            raise ConfigurationError("LocalProvider nodes_per_block must be >= 1")
        if min_blocks > max_blocks:
            raise ConfigurationError(f"LocalProvider min_blocks ({min_blocks}) > max_blocks ({max_blocks})")
        self.nodes_per_block = nodes_per_block
        self.launcher = launcher or SingleNodeLauncher()
        self.init_blocks = init_blocks
        self.min_blocks = min_blocks
        self.max_blocks = max_blocks
        self.worker_init = worker_init
        self.cmd_timeout = cmd_timeout
        self.parallelism = parallelism
        self._jobs: dict[str, subprocess.Popen] = {}
        self._next = 0

    def submit(self, command: str, tasks_per_node: int, job_name: str = "pervade.block", log_path=None) -> str:
        """Starts a block; returns its job id."""
        script = self.launcher(command, tasks_per_node, self.nodes_per_block)
        if self.worker_init:
            script = f"{self.worker_init}\n{script}"
        out = open(log_path, "ab") if log_path else subprocess.DEVNULL
        try:
            proc = subprocess.Popen(["/bin/bash", "-c", script], stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            if log_path:
                out.close()
        job_id = str(proc.pid)
        self._jobs[job_id] = proc
        logger.info("block %s started: pid %s", job_name, job_id)
        return job_id

    def status(self, job_ids):
        """'RUNNING', 'COMPLETED' or 'FAILED' for each job id."""
        out = []
        for job_id in job_ids:
            proc = self._jobs.get(job_id)
            if proc is None:
                out.append("UNKNOWN")
                continue
            code = proc.poll()
            out.append("RUNNING" if code is None else ("COMPLETED" if code == 0 else "FAILED"))
        return out

    def cancel(self, job_ids, grace: float = 5.0):
        """Stops blocks: SIGTERM to each block's process group, SIGKILL after `grace` seconds."""
        procs = [self._jobs[j] for j in job_ids if j in self._jobs]
        for proc in procs:
            if proc.poll() is None:
                _signal_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in procs:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            # The block's group, including workers that outlived their pool.
            _signal_group(proc.pid, signal.SIGKILL)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                logger.error("block pid %s did not exit after SIGKILL", proc.pid)
        return [True for _ in procs]

    @property
    def job_ids(self):
        return list(self._jobs)


def _signal_group(pid: int, sig) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
