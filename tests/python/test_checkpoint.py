"""Checkpoints: each checkpoint_mode writes memoized results to <run_dir>/checkpoint/tasks.db at
its moment; a later run loads them (checkpoint_files=, get_all_checkpoints, get_last_checkpoint)
and does not run those tasks again, even after its driver was killed with SIGKILL."""

import os
import pickle
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap

import pytest
from conftest import wait_until

import pervade as parsl
from pervade import BasicMemoizer, python_app
from pervade.memoization import get_all_checkpoints, get_last_checkpoint

T = 60


@python_app(cache=True)
def double(x):
    return 2 * x


def rows(dfk_or_dir):
    """Records in a run's checkpoint file, read as another process would."""
    directory = dfk_or_dir if isinstance(dfk_or_dir, str) else os.path.join(dfk_or_dir.run_dir, "checkpoint")
    path = os.path.join(directory, "tasks.db")
    if not os.path.exists(path):
        return 0
    with sqlite3.connect(path) as db:
        return db.execute("SELECT count(*) FROM memo").fetchone()[0]


def run_all(n=5):
    return [f.result(timeout=T) for f in [double(i) for i in range(n)]]


def test_task_exit_writes_before_the_future_completes(load):
    dfk = load(checkpoint_mode="task_exit")
    for i in range(20):
        assert double(i).result(timeout=T) == 2 * i
        assert rows(dfk) == i + 1


def test_manual_writes_at_checkpoint(load):
    dfk = load(memoizer=BasicMemoizer(checkpoint_mode="manual"))
    run_all()
    assert rows(dfk) == 0
    assert dfk.checkpoint() == 5
    assert rows(dfk) == 5
    assert dfk.checkpoint() == 0


def parsl_pickles(dfk):
    """The records of the run's Parsl-format copy (tasks.pkl), read as Parsl reads them."""
    path = os.path.join(dfk.run_dir, "checkpoint", "tasks.pkl")
    records = []
    with open(path, "rb") as f:
        while True:
            try:
                records.append(pickle.load(f))
            except EOFError:
                return records


def test_parsl_pickle_copy_holds_each_result_as_parsl_writes_it(load):
    dfk = load(memoizer=BasicMemoizer(checkpoint_mode="manual"))
    futures = [double(i) for i in range(4)]
    assert [f.result(timeout=T) for f in futures] == [0, 2, 4, 6]
    pkl = os.path.join(dfk.run_dir, "checkpoint", "tasks.pkl")
    assert not os.path.exists(pkl)
    assert dfk.checkpoint() == 4
    records = parsl_pickles(dfk)
    assert sorted(r["result"] for r in records) == [0, 2, 4, 6]
    assert all(set(r) == {"hash", "exception", "result"} and r["exception"] is None for r in records)
    assert {r["hash"]: r["result"] for r in records} == {f.task_record["hashsum"]: f.result() for f in futures}
    assert oct(os.stat(pkl).st_mode & 0o777) == oct(0o600)


def test_pickle_copy_must_be_a_bool():
    with pytest.raises(parsl.ConfigurationError, match="pickle_copy must be True or False, got 'no'"):
        BasicMemoizer(checkpoint_mode="manual", pickle_copy="no")


def test_parsl_pickle_copy_can_be_turned_off(load):
    dfk = load(memoizer=BasicMemoizer(checkpoint_mode="task_exit", pickle_copy=False))
    run_all()
    assert rows(dfk) == 5
    assert not os.path.exists(os.path.join(dfk.run_dir, "checkpoint", "tasks.pkl"))


def test_dfk_exit_writes_at_cleanup(load):
    dfk = load(checkpoint_mode="dfk_exit")
    run_all()
    assert rows(dfk) == 0
    dfk.cleanup()
    assert rows(dfk) == 5


def test_periodic_writes_every_period(load):
    dfk = load(memoizer=BasicMemoizer(checkpoint_mode="periodic", checkpoint_period="00:00:01"))
    run_all()
    assert wait_until(lambda: rows(dfk) == 5, timeout=T)


def test_each_pass_with_results_is_in_the_run_log_as_parsl_writes_it(load):
    dfk = load(memoizer=BasicMemoizer(checkpoint_mode="manual"))
    run_all(3)
    assert dfk.checkpoint() == 3
    assert dfk.checkpoint() == 0  # DEBUG: not in the log at its default level
    dfk.cleanup()
    lines = [line for line in open(os.path.join(dfk.run_dir, "parsl.log")) if "checkpoint" in line]
    assert len(lines) == 1 and lines[0].rstrip().endswith("INFO: Done checkpointing 3 tasks"), lines
    float(lines[0].split(" ")[0])  # Parsl's layout starts with the time in seconds


def test_periodic_needs_a_period(make_config):
    with pytest.raises(parsl.ConfigurationError, match="period"):
        make_config(checkpoint_mode="periodic")
    with pytest.raises(parsl.ConfigurationError, match="checkpoint_period"):
        BasicMemoizer(checkpoint_mode="periodic", checkpoint_period="soon")


def test_an_unknown_mode_is_refused_naming_the_engines_modes(make_config):
    for make in (lambda mode: BasicMemoizer(checkpoint_mode=mode), lambda mode: make_config(checkpoint_mode=mode)):
        for mode in ("Manual", "", 3):
            with pytest.raises(parsl.ConfigurationError, match=f"'{mode}'.*'task_exit'.*'manual'"):
                make(mode)
    assert BasicMemoizer(checkpoint_mode="dfk_exit").checkpoint_mode == "dfk_exit"


def test_memoizer_and_old_style_options_together_are_refused(make_config):
    with pytest.raises(parsl.ConfigurationError, match="not both"):
        make_config(memoizer=BasicMemoizer(checkpoint_mode="task_exit"), checkpoint_mode="task_exit")


@pytest.mark.parametrize("style", ["old", "new"])
def test_restart_reuses_the_checkpoint(load, run_dir, style):
    def options(**kw):
        return kw if style == "old" else {"memoizer": BasicMemoizer(**kw)}

    first = load(**options(checkpoint_mode="task_exit"))
    assert run_all() == [0, 2, 4, 6, 8]
    first.cleanup()
    parsl.clear()
    load(**options(checkpoint_mode="task_exit", checkpoint_files=get_last_checkpoint(run_dir)))
    futures = [double(i) for i in range(6)]
    assert [f.result(timeout=T) for f in futures] == [0, 2, 4, 6, 8, 10]
    assert [f.task_status() for f in futures] == ["memo_done"] * 5 + ["exec_done"]


def test_default_files_are_all_checkpoints_under_run_dir(load):
    for n in (2, 4):  # two runs, each adds results
        load(checkpoint_mode="task_exit")
        run_all(n)
        parsl.dfk().cleanup()
        parsl.clear()
    load(checkpoint_mode="task_exit")  # checkpoint_files not given: every earlier run's
    futures = [double(i) for i in range(4)]
    parsl.wait_for_current_tasks()
    assert [f.task_status() for f in futures] == ["memo_done"] * 4


def test_memoization_without_checkpoint_mode_loads_given_files_only(load, run_dir):
    load(checkpoint_mode="task_exit")
    run_all(2)
    parsl.dfk().cleanup()
    parsl.clear()
    load()  # no mode, no files: nothing loaded, nothing written
    f = double(1)
    assert f.result(timeout=T) == 2
    assert f.task_status() == "exec_done"
    assert not os.path.exists(os.path.join(parsl.dfk().run_dir, "checkpoint"))
    parsl.dfk().cleanup()
    parsl.clear()
    load(checkpoint_files=get_all_checkpoints(run_dir))
    f = double(1)
    assert f.result(timeout=T) == 2
    assert f.task_status() == "memo_done"


def test_get_all_and_last_checkpoints(tmp_path):
    root = tmp_path / "runinfo"
    assert get_all_checkpoints(str(root)) == []
    assert get_last_checkpoint(str(root)) == []
    for run in ("000", "001", "002", "1000"):
        (root / run).mkdir(parents=True)
    for run in ("000", "002"):
        (root / run / "checkpoint").mkdir()
    (root / "monitoring.db").write_text("")
    assert get_all_checkpoints(str(root)) == [str(root / "000" / "checkpoint"), str(root / "002" / "checkpoint")]
    assert get_last_checkpoint(str(root)) == [str(root / "002" / "checkpoint")]
    assert parsl.utils.get_last_checkpoint is get_last_checkpoint


def test_missing_or_corrupt_checkpoint_is_bad_checkpoint_naming_the_file(make_config, tmp_path):
    missing = str(tmp_path / "nope")
    with pytest.raises(parsl.BadCheckpoint, match="nope"):
        parsl.DataFlowKernel(make_config(checkpoint_files=[missing]))
    corrupt = tmp_path / "bad" / "checkpoint"
    corrupt.mkdir(parents=True)
    (corrupt / "tasks.db").write_bytes(b"\0garbage" * 1000)
    with pytest.raises(parsl.BadCheckpoint, match=str(corrupt / "tasks.db")):
        parsl.DataFlowKernel(make_config(checkpoint_files=[str(corrupt)]))


# ---------------------------------------------------------------- crash consistency

DRIVER = textwrap.dedent("""
    import os, sys
    import pervade as parsl
    from pervade import python_app

    run_dir, effects, reported, result, n = sys.argv[1:6]
    n = int(n)

    def append(path, line):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        os.write(fd, (line + "\\n").encode())
        os.close(fd)

    @python_app(cache=True)
    def work(i):
        append(effects, str(i))          # the side effect: this task ran
        x = 0
        for k in range(2000):            # a little work, so that kills land mid-run
            x += k * i
        return (i, x)

    def report(f):
        append(reported, str(f.result()[0]))  # the driver saw this task complete

    config = parsl.Config(executors=[parsl.ThreadPoolExecutor(max_threads=4)], run_dir=run_dir,
                          checkpoint_mode="task_exit", initialize_logging=False)
    with parsl.load(config):
        futures = [work(i) for i in range(n)]
        for f in futures:
            f.add_done_callback(report)
        total = sum(f.result()[1] for f in futures)
    append(result, str(total))
""")


def lines(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [int(x) for x in f.read().split()]


def checkpointed_ids(run_dir):
    """Task ids whose results are in any checkpoint under run_dir (read as the next run would)."""
    import pickle
    ids = set()
    for directory in get_all_checkpoints(run_dir):
        path = os.path.join(directory, "tasks.db")
        if not os.path.exists(path):
            continue
        with sqlite3.connect(path) as db:
            ids.update(pickle.loads(v)[0] for (v,) in db.execute("SELECT value FROM memo"))
    return ids


def test_sigkill_at_random_points_loses_no_reported_result(tmp_path):
    n, kills = 3000, 4
    rng = random.Random(1234)
    run_dir = str(tmp_path / "runinfo")
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    reported, result = str(tmp_path / "reported.txt"), str(tmp_path / "result.txt")
    expected = sum(sum(k * i for k in range(2000)) for i in range(n))
    done_before = set()  # results in checkpoints when a run starts
    for attempt in range(kills + 1):
        effects = str(tmp_path / f"effects-{attempt}.txt")
        proc = subprocess.Popen([sys.executable, str(script), run_dir, effects, reported, result, str(n)])
        try:
            if attempt < kills:
                # Kill once a random share of what is left has run (or at once, the first time).
                left = n - len(done_before)
                target = rng.randint(0, max(0, left - 100)) if attempt else 0
                assert wait_until(lambda: len(lines(effects)) >= target or proc.poll() is not None, T)
                proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=T) in (0, -signal.SIGKILL)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        recorded = checkpointed_ids(run_dir)
        # No task whose result was in a checkpoint ran again...
        again = done_before & set(lines(effects))
        assert not again, f"run {attempt} ran {len(again)} checkpointed tasks again, e.g. {sorted(again)[:5]}"
        # ...and every task the driver saw complete had its result in the checkpoint by then.
        lost = set(lines(reported)) - recorded
        assert not lost, f"run {attempt}: {len(lost)} reported results are not in a checkpoint"
        done_before = recorded
    assert lines(result) == [expected]
    assert len(done_before) == n
    ran = set()
    for attempt in range(kills + 1):
        ran.update(lines(str(tmp_path / f"effects-{attempt}.txt")))
    assert ran == set(range(n))
