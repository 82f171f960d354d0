"""`pervade status RUN_DIR` (a summary of a run) and `pervade top RUN_DIR` (the same, live).

Both read the monitoring database read-only through db.Monitoring, like the web dashboard.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import shutil
import sys
import time

from .db import STATES, Monitoring, NotMonitoringDatabase
from .pages import fmt_bytes, fmt_seconds, rate

FAILURES_SHOWN = 10


def summary(db: Monitoring, run_id: str | None = None, width: int = 100) -> str:
    """The text of a run's summary: the latest workflow, or `run_id`."""
    workflows = db.workflows()
    w = next((w for w in workflows if run_id is None or w["run_id"] == run_id), None)
    if w is None:
        return f"no workflow {run_id!r} in {db.path}" if run_id else f"no workflow recorded yet in {db.path}"
    stats = db.run(w["run_id"])
    counts = stats.counts()
    state = "running" if w["time_completed"] is None else f"completed {w['time_completed']}"
    lines = [f"workflow {w['workflow_name'] or '-'}  run {w['run_id']}  began {w['time_began']}  {state}",
             f"tasks {stats.tasks}  " + "  ".join(f"{s} {counts[s]}" for s in STATES),
             f"rate {rate(stats, w):.1f} tasks/s", ""]
    lines.append(f"{'app':<24} {'tasks':>8} {'finished':>9} {'failed':>7} {'retries':>8} {'mean run':>10} {'max run':>10} {'peak mem':>11}")
    for app, a in sorted(stats.apps.items()):
        failed = a.states["failed"] + a.states["dep_fail"]
        lines.append(f"{app[:24]:<24} {a.tasks:>8} {a.finished:>9} {failed:>7} {a.retries:>8} "
                     f"{fmt_seconds(a.duration_mean):>10} {fmt_seconds(a.duration_max):>10} {fmt_bytes(a.memory_max):>11}")
    failures = db.failures(w["run_id"], FAILURES_SHOWN)
    if failures:
        lines += ["", f"failures ({len(failures)} latest of {stats.failed_total}):"]
        for f in failures:
            errors = [t["error"] for t in f["tries"] if t["error"]]
            error = " ".join((errors[-1] if errors else "(no exception text)").split())
            lines.append(f"  task {f['task_id']} {f['app']}: {error}"[:width])
            if f["stdout"] or f["stderr"]:
                lines.append(f"    stdout {f['stdout'] or '-'}  stderr {f['stderr'] or '-'}"[:width])
    return "\n".join(line[:width] for line in lines)


def open_database(prog: str, path: str) -> Monitoring | None:
    try:
        return Monitoring(path)
    except NotMonitoringDatabase as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return None


def chosen_run(db: Monitoring, args) -> str | None:
    """--run, else the run whose own directory was given (runinfo/003), else None: the latest."""
    return args.run or (db.run_in(args.path) if os.path.isdir(args.path) else None)


def status_main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="pervade status", description="Print a summary of a run from its monitoring database.")
    parser.add_argument("path", help="a run directory holding monitoring.db (or one run's directory in it), or the database file")
    parser.add_argument("--run", help="the run_id to show (default: the run of the directory given, else the latest)")
    args = parser.parse_args(argv)
    db = open_database("pervade status", args.path)
    if db is None:
        return 1
    with contextlib.closing(db):
        db.read_all()
        print(summary(db, chosen_run(db, args), width=10_000))
    return 0


@contextlib.contextmanager
def keys_without_enter():
    """Lets top read single key presses from a terminal; restores the terminal on exit."""
    if not sys.stdin.isatty():
        yield
        return
    import termios
    import tty
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def pressed_q(timeout: float) -> bool:
    """Waits up to `timeout` s for input on stdin; True if it is q (or stdin closed)."""
    if not sys.stdin.isatty():
        time.sleep(timeout)   # nothing to read keys from: refresh until Ctrl-C
        return False
    ready, _, _ = select.select([sys.stdin], [], [], timeout)
    if not ready:
        return False
    key = os.read(sys.stdin.fileno(), 1)
    return key in (b"q", b"Q", b"")


def top_main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="pervade top", description="A live view of a run in the terminal (q or Ctrl-C quits).")
    parser.add_argument("path", help="a run directory holding monitoring.db (or one run's directory in it), or the database file")
    parser.add_argument("--run", help="the run_id to show (default: the run of the directory given, else the latest)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes (default 1)")
    args = parser.parse_args(argv)
    db = open_database("pervade top", args.path)
    if db is None:
        return 1
    try:
        with contextlib.closing(db), keys_without_enter():
            while True:
                db.read_all()
                size = shutil.get_terminal_size((100, 40))
                text = "\n".join(summary(db, chosen_run(db, args), size.columns - 1).splitlines()[:size.lines - 2])
                sys.stdout.write(f"\x1b[H\x1b[2J{text}\n\npervade top: {time.strftime('%H:%M:%S')}, q to quit\n")
                sys.stdout.flush()
                if pressed_q(args.interval):
                    return 0
    except KeyboardInterrupt:
        return 0
