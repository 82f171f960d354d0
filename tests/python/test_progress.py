"""pervade.progress(futures): a bar on a terminal, silence elsewhere, always waits for every future."""

import io
import os
import threading

import pervade as parsl
from pervade.progress import bar_line


GATE = threading.Event()   # tasks run on the ThreadPoolExecutor, in this process


@parsl.python_app
def gated(x):
    GATE.wait(30)
    if x % 10 == 0:
        raise ValueError(x)
    return x


class Terminal(io.StringIO):
    """What progress writes to, claiming to be a terminal."""

    def isatty(self):
        return True


def test_silent_when_not_a_terminal(dfk):
    GATE.clear()
    futures = [gated(i) for i in range(50)]
    out = io.StringIO()
    waiter = threading.Thread(target=parsl.progress, args=(futures,), kwargs={"file": out})
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive()           # progress waits while tasks are held
    GATE.set()
    waiter.join(30)
    assert not waiter.is_alive()
    assert all(f.done() for f in futures)
    assert out.getvalue() == ""


def test_bar_on_a_terminal_counts_done_and_failed(dfk):
    GATE.set()
    futures = [gated(i) for i in range(100)]
    out = Terminal()
    parsl.progress(futures, file=out)
    assert all(f.done() for f in futures)
    last = out.getvalue().rstrip("\n").split("\r")[-1]
    assert "100/100 100%" in last and "10 failed" in last and last.startswith("[" + "#" * 10)
    assert out.getvalue().endswith("\n")


def test_bar_on_a_real_pty(dfk):
    master, slave = os.openpty()
    try:
        with os.fdopen(slave, "w", closefd=False) as tty:
            GATE.set()
            futures = [gated(i) for i in range(1, 6)]
            parsl.progress(futures, file=tty)
        text = os.read(master, 65536).decode()
    finally:
        os.close(master)
        os.close(slave)
    assert "5/5 100%" in text


def test_no_futures_returns_at_once():
    out = Terminal()
    parsl.progress([], file=out)
    assert "0/0 100%" in out.getvalue()


def test_bar_line_fits_and_fills():
    line = bar_line(50, 200, 3, 2.0, 60)
    assert len(line) <= 60
    assert " 50/200  25%  3 failed  25/s  ETA 6 s" in line
    cells = line[1:line.index("]")]
    assert cells.count("#") == len(cells) // 4
    assert bar_line(0, 10, 0, 0.0, 80).startswith("[" + "." * 10)


def test_plain_futures_too():
    """Any concurrent.futures.Future works: done, failed and cancelled ones are counted."""
    import concurrent.futures
    futures = [concurrent.futures.Future() for _ in range(4)]
    futures[0].set_result(1)
    futures[1].set_exception(ValueError())
    futures[2].cancel()
    futures[2].set_running_or_notify_cancel()
    out = Terminal()
    finisher = threading.Thread(target=futures[3].set_result, args=(3,))
    finisher.start()
    parsl.progress(futures, file=out)
    finisher.join()
    assert "4/4 100%  2 failed" in out.getvalue()
