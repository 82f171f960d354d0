"""Chaos: thousands of tasks on a HighThroughputExecutor while workers and pools are killed
with SIGKILL at random; the scaling strategy replaces killed pools' blocks through the provider
(min_blocks, docs/scaling.md). With retries every task completes exactly once, with the right
value, and no process is left at the end."""

import os
import random
import signal
import threading

from conftest import own_processes, wait_until

import pervade as parsl
from pervade import HighThroughputExecutor, LocalProvider, python_app

T = 120
TASKS = 3000
KILL_EVERY = 150  # completed tasks between two kills: kills are spread over the whole run
POOL_KILL_EVERY = 4  # every 4th kill takes a whole pool (and its workers) down


@python_app(executors=["htex"])
def square(i):
    import time
    time.sleep(0.002)  # long enough that workers are caught mid-task
    return i, i * i


def test_workflow_survives_killed_workers_and_pools(tmp_path, no_thread_leak):
    seed = int.from_bytes(os.urandom(4), "little")
    rng = random.Random(seed)
    print(f"chaos seed {seed}")
    config = parsl.Config(
        executors=[HighThroughputExecutor(label="htex", max_workers_per_node=2, heartbeat_period=0.2,
                                          heartbeat_threshold=4, worker_port_range=(58000, 59000),
                                          provider=LocalProvider(init_blocks=2, min_blocks=2, max_blocks=2))],
        run_dir=str(tmp_path / "runinfo"), retries=10, strategy="simple", strategy_period=0.2)
    dfk = parsl.load(config)
    executor = dfk.executors["htex"]
    completed = [0] * TASKS  # done-callback runs per task
    progress = threading.Condition()
    done_count = 0
    kills = {"worker": 0, "pool": 0}
    stop = threading.Event()
    chaos_error = []

    def on_done(i):
        def callback(_):
            nonlocal done_count
            with progress:
                completed[i] += 1
                done_count += 1
                progress.notify_all()
        return callback

    def kill_one(kind: bytes) -> bool:
        pids = own_processes(kind)
        if not pids:
            return False
        try:
            os.kill(rng.choice(pids), signal.SIGKILL)
        except ProcessLookupError:
            return False
        return True

    def chaos():
        try:
            n = 0
            while not stop.is_set():
                with progress:  # the next kill after KILL_EVERY more completions
                    target = (n + 1) * KILL_EVERY
                    if not progress.wait_for(lambda: done_count >= target or stop.is_set(), timeout=T):
                        raise AssertionError(f"no progress: {done_count} of {TASKS} tasks done")
                    if stop.is_set() or done_count >= TASKS:
                        return
                n += 1
                pool = n % POOL_KILL_EVERY == 0
                kind = b"pervade-pool" if pool else b"pervade.worker"
                if not wait_until(lambda: kill_one(kind) or stop.is_set(), T):
                    raise AssertionError(f"no {kind.decode()} process to kill")
                if stop.is_set():
                    return
                kills["pool" if pool else "worker"] += 1
        except BaseException as e:  # noqa: BLE001 - reported by the test thread
            chaos_error.append(e)

    try:
        assert wait_until(lambda: len(executor.pools()) == 2, T), executor.refusals()
        futures = []
        for i in range(TASKS):
            f = square(i)
            f.add_done_callback(on_done(i))
            futures.append(f)
        killer = threading.Thread(target=chaos, name="chaos")
        killer.start()
        if not wait_until(lambda: all(f.done() for f in futures), T, interval=0.1):
            stuck = [f for f in futures if not f.done()]
            raise AssertionError(
                f"{len(stuck)} tasks never finished (kills {kills}); first: "
                f"{[(f.tid, f.task_status(), f.task_record['fail_count']) for f in stuck[:5]]}; "
                f"pools {executor.pools()}; outstanding {executor.outstanding()}; blocks {executor.block_status()}")
        results = [f.result() for f in futures]
        stop.set()
        with progress:
            progress.notify_all()
        killer.join(T)
        assert not chaos_error, chaos_error
        assert results == [(i, i * i) for i in range(TASKS)]
        assert wait_until(lambda: sum(completed) == TASKS, T)
        assert completed == [1] * TASKS, "a future completed more than once"
        # The chaos really happened and really hit tasks.
        assert kills["worker"] >= 10 and kills["pool"] >= 3, kills
        retried = sum(1 for f in futures if f.task_record["fail_count"] > 0)
        assert retried > 0, "no task was hit by a kill"
        assert wait_until(lambda: len(executor.blocks) >= 2 + kills["pool"], T), \
            f"the strategy replaces every killed pool's block: {executor.block_status()}"
        assert not executor.bad_state_is_set
        print(f"kills {kills}, tasks retried {retried}")
    finally:
        stop.set()
        with progress:
            progress.notify_all()
        pids = own_processes(b"pervade-pool", b"pervade.worker")
        dfk.cleanup()
    assert wait_until(lambda: not own_processes(b"pervade-pool", b"pervade.worker"), T), \
        f"processes left behind: {own_processes(b'pervade-pool', b'pervade.worker')} (had {pids})"
