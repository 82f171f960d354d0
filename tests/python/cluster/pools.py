"""pervade-pool processes started by hand on test hosts (network namespaces), as a user starts
pools on machines the executor's provider does not manage.

Who calls it: tests, from their main thread.

    pools = HostPools()
    pools.start(network.host("a"), executor, block_id="a")   # connects over TCP to the interchange
    ...
    pools.stop()    # SIGKILL to each pool's process group; waits until the hosts run nothing
"""

from __future__ import annotations

import os
import signal
import subprocess
import time


class HostPools:
    def __init__(self, log_dir: str):
        self.log_dir = log_dir
        self.started: list = []  # (host, Popen)

    def start(self, host, executor, block_id: str) -> subprocess.Popen:
        """Runs executor.pool_command(block_id) on `host`, whose hostname becomes host-<name>."""
        os.makedirs(self.log_dir, exist_ok=True)
        with open(os.path.join(self.log_dir, f"pool-{executor.label}-{block_id}.log"), "ab") as log:
            proc = subprocess.Popen(host.argv(["/bin/sh", "-c", executor.pool_command(block_id)],
                                              hostname=f"host-{host.name}"),
                                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        self.started.append((host, proc))
        return proc

    def kill(self, proc: subprocess.Popen) -> None:
        """SIGKILL to the pool and its workers (its process group), as when its node dies."""
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)

    def stop(self, timeout: float = 30) -> list:
        """Kills what is still running; returns the pids still alive on the hosts after `timeout`."""
        for _host, proc in self.started:
            self.kill(proc)
        hosts = {id(h): h for h, _ in self.started}.values()
        deadline = time.monotonic() + timeout
        while True:
            left = [pid for h in hosts for pid in h.pids()]
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.05)
