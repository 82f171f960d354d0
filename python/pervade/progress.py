"""pervade.progress(futures): a progress bar on the terminal while futures finish.

    futures = [simulate(i) for i in range(10_000)]
    pervade.progress(futures)      # [#######.........] 4512/10000  45%  3 failed  2210/s  ETA 2 s

It waits until every future is done. The bar is drawn only when the output is a terminal;
otherwise it waits silently. Completion is counted by one done-callback per future (a lock
and two integers), and the bar is redrawn by the calling thread at most REDRAWS_PER_SECOND
times, so watching a run does not slow it down.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from concurrent.futures._base import FINISHED

from .futures import AppFuture

REDRAWS_PER_SECOND = 10


def is_done(future) -> bool:
    """Done without taking the future's lock: an AppFuture makes its Condition only when first
    asked through the Future API, and most of a fan-out's futures never need one."""
    return future._state == FINISHED if isinstance(future, AppFuture) else future.done()


def is_failed(future) -> bool:
    """Whether a done future ended in an exception or was cancelled (lock-free for a finished AppFuture)."""
    if isinstance(future, AppFuture) and future._state == FINISHED:
        return future._exception is not None
    return future.cancelled() or future.exception() is not None


class _Counter:
    """Counts finished futures. add() runs on whichever thread completes a future."""

    def __init__(self, total: int):
        self.total = total
        self.done = 0
        self.failed = 0
        self.all_done = threading.Event()
        self._lock = threading.Lock()
        if total == 0:
            self.all_done.set()

    def add(self, future) -> None:
        has_failed = is_failed(future)
        with self._lock:
            self.done += 1
            self.failed += has_failed
            if self.done == self.total:
                self.all_done.set()


def bar_line(done: int, total: int, failed: int, elapsed: float, width: int) -> str:
    """One line of the bar, fitted to `width` columns."""
    fraction = done / total if total else 1.0
    rate = done / elapsed if elapsed > 0 else 0.0
    eta = f"  ETA {(total - done) / rate:.0f} s" if 0 < done < total and rate > 0 else ""
    tail = (f" {done}/{total} {100 * fraction:3.0f}%" + (f"  {failed} failed" if failed else "")
            + f"  {rate:.0f}/s{eta}")
    cells = max(width - len(tail) - 3, 10)
    filled = int(cells * fraction)
    return f"[{'#' * filled}{'.' * (cells - filled)}]{tail}"[:width]


def progress(futures, file=None) -> None:
    """Wait for every future in `futures`, drawing a progress bar if `file` (stdout) is a terminal."""
    futures = list(futures)
    out = sys.stdout if file is None else file
    counter = _Counter(len(futures))
    for future in futures:
        if is_done(future):   # counted now: a callback would make an AppFuture build its Condition
            counter.add(future)
        else:
            future.add_done_callback(counter.add)
    is_tty = getattr(out, "isatty", lambda: False)()
    if not is_tty:
        counter.all_done.wait()
        return
    start = time.monotonic()
    width = shutil.get_terminal_size().columns - 1
    while True:
        finished = counter.all_done.wait(1 / REDRAWS_PER_SECOND)
        out.write("\r" + bar_line(counter.done, counter.total, counter.failed, time.monotonic() - start, width))
        out.flush()
        if finished:
            out.write("\n")
            out.flush()
            return
