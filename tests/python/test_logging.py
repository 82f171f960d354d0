"""Logging: Parsl's set_stream_logger/set_file_logger, Config(initialize_logging=...) with the
log configs, the engine's log file, and engine records forwarded to Python handlers."""

import io
import json
import logging
import os
import re
import stat

import pytest

import pervade as parsl
from pervade import LocalProvider, logging_engine, python_app
from pervade.logconfigs.base import LogConfig
from pervade.logconfigs.file import FileLogging
from pervade.logconfigs.json import JSONLogging
from pervade.logconfigs.noop import NoopLogging

# Parsl's DEFAULT_FORMAT: created, asctime, process, thread, logger:line, function, level.
LINE = re.compile(r"^\d+\.\d{6} \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+-\d+ \S+-\d+ \S+:\d+ \S+ (DEBUG|INFO|WARNING|ERROR|CRITICAL): ")


@python_app
def double(x):
    return 2 * x


@pytest.fixture(autouse=True)
def logging_untouched():
    """Every test: the levels and handlers of the root, "pervade" and concurrent.futures loggers
    are as before (pervade never forces a level; cleanup removes what it added)."""
    names = ("", "pervade", "pervade.dataflow.dflow", "concurrent.futures")
    before = {n: (logging.getLogger(n).level, list(logging.getLogger(n).handlers)) for n in names}
    yield
    after = {n: (logging.getLogger(n).level, list(logging.getLogger(n).handlers)) for n in names}
    for n in names:  # undo what the test itself set up, so the next test starts clean
        logging.getLogger(n).setLevel(before[n][0])
    assert after == before


def restore_level(name):
    logging.getLogger(name).setLevel(logging.NOTSET)


def test_set_stream_logger_adds_and_removes_a_handler():
    stream = io.StringIO()
    remove = parsl.set_stream_logger(stream=stream, level=logging.INFO)
    try:
        assert logging.getLogger("pervade").level == logging.DEBUG  # as Parsl: the caller asked
        logging.getLogger("pervade.some.module").info("hello %d", 5)
        logging.getLogger("pervade.some.module").debug("below the handler's level")
        logging.getLogger("concurrent.futures").error("callback failed")
    finally:
        remove()
        restore_level("pervade")
    logging.getLogger("pervade.some.module").warning("after removal")
    out = stream.getvalue()
    assert re.search(r"pervade\.some\.module:\d+ \[INFO\]  hello 5", out)
    assert "callback failed" in out
    assert "below the handler's level" not in out and "after removal" not in out


def test_set_file_logger_writes_parsl_layout(tmp_path):
    path = tmp_path / "my.log"
    remove = parsl.set_file_logger(str(path), name="pervade.test_logging")
    try:
        logging.getLogger("pervade.test_logging").debug("in the file")
    finally:
        remove()
        restore_level("pervade.test_logging")
    lines = path.read_text().splitlines()
    assert len(lines) == 1 and LINE.match(lines[0]) and lines[0].endswith("DEBUG: in the file")


def test_default_writes_pervade_log_without_forcing_levels(make_config, no_thread_leak):
    kernel = parsl.load(make_config())
    try:
        assert logging.getLogger("pervade").level == logging.NOTSET
        assert double(4).result() == 8
        logging.getLogger("pervade.test_logging").warning("a warning from Python")
        logging.getLogger("pervade.test_logging").info("not enabled: the root logger is at WARNING")
    finally:
        kernel.cleanup()
    lines = open(os.path.join(kernel.run_dir, "pervade.log")).read().splitlines()
    python_lines = [line for line in lines if "pervade.test_logging" in line]
    assert len(python_lines) == 1 and LINE.match(python_lines[0])
    assert python_lines[0].endswith("WARNING: a warning from Python")
    assert all(LINE.match(line) for line in lines), lines
    # Parsl's name for it: the same file.
    assert os.readlink(os.path.join(kernel.run_dir, "parsl.log")) == "pervade.log"
    assert open(os.path.join(kernel.run_dir, "parsl.log")).read().splitlines() == lines


def test_file_logging_level_and_format(make_config, no_thread_leak):
    logging.getLogger("pervade.test_logging").setLevel(logging.DEBUG)
    try:
        kernel = parsl.load(make_config(initialize_logging=FileLogging(level=logging.INFO,
                                                                       format_string="X %(levelname)s %(message)s")))
        logging.getLogger("pervade.test_logging").info("kept")
        logging.getLogger("pervade.test_logging").debug("below the file's level")
        kernel.cleanup()
    finally:
        restore_level("pervade.test_logging")
    text = open(os.path.join(kernel.run_dir, "pervade.log")).read()
    assert "X INFO kept\n" in text and "below the file's level" not in text


def test_json_logging_writes_every_logger_with_parsl_extras(make_config, no_thread_leak):
    kernel = parsl.load(make_config(initialize_logging=JSONLogging()))
    logging.getLogger("someone.else").warning("task %s is odd", 3, extra={"parsl.task": 3})
    kernel.cleanup()
    assert not os.path.exists(os.path.join(kernel.run_dir, "pervade.log"))
    assert os.readlink(os.path.join(kernel.run_dir, "parsl.jsonlog")) == "pervade.jsonlog"
    records = [json.loads(line) for line in open(os.path.join(kernel.run_dir, "pervade.jsonlog"))]
    mine = [r for r in records if r["name"] == "someone.else"]
    assert len(mine) == 1
    assert mine[0]["formatted"] == "task 3 is odd" and mine[0]["msg"] == "task %s is odd"
    assert mine[0]["parsl.task"] == "3" and mine[0]["levelname"] == "WARNING"


@pytest.mark.parametrize("setting", [False, NoopLogging()])
def test_no_log_file(make_config, no_thread_leak, setting):
    kernel = parsl.load(make_config(initialize_logging=setting))
    assert double(1).result() == 2
    kernel.cleanup()
    assert os.listdir(kernel.run_dir) == []


def test_bad_initialize_logging_is_a_configuration_error(make_config):
    with pytest.raises(parsl.ConfigurationError, match="initialize_logging"):
        make_config(initialize_logging="yes")


class Counting(LogConfig):
    """A user's LogConfig: counts initializations and undos."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def initialize_logging(self, *, log_dir, log_name):
        self.calls.append(("init", str(log_dir), log_name))
        return lambda: self.calls.append(("undo",))


def test_user_log_config_is_shared_between_kernels(make_config, no_thread_leak):
    config = Counting()
    first = parsl.DataFlowKernel(make_config(initialize_logging=config))
    second = parsl.DataFlowKernel(make_config(initialize_logging=config))
    assert config.calls == [("init", first.run_dir, "pervade")]  # once: the first's run_dir holds
    first.cleanup()
    assert config.calls == [("init", first.run_dir, "pervade")]
    second.cleanup()
    assert config.calls[-1] == ("undo",)


def test_shared_file_logging_keeps_the_first_file_until_the_last_kernel(make_config, no_thread_leak):
    config = FileLogging()
    first = parsl.DataFlowKernel(make_config(initialize_logging=config))
    second = parsl.DataFlowKernel(make_config(initialize_logging=config))
    first.cleanup()
    logging.getLogger("pervade.test_logging").warning("from the second kernel's time")
    second.cleanup()
    assert config.engine_observer is None
    assert "from the second kernel's time" in open(os.path.join(first.run_dir, "pervade.log")).read()
    assert not os.path.exists(os.path.join(second.run_dir, "pervade.log"))


def test_forward_makes_log_records_with_parsl_extras():
    """The observer's sink callback: engine records become LogRecords of their logger."""
    got = []

    class Keep(logging.Handler):
        def emit(self, record):
            got.append(record)

    handler = Keep()
    lg = logging.getLogger(logging_engine.DATAFLOW_LOGGER)
    lg.addHandler(handler)
    lg.setLevel(logging.DEBUG)
    try:
        logging_engine.forward([(1700000000.25, logging.DEBUG, logging_engine.DATAFLOW_LOGGER, "update_task_state",
                                 "Task 4 try 0 launched on executor threads",
                                 {"parsl.task": "4", "parsl.try_id": "0", "parsl.executor": "threads"})])
    finally:
        lg.removeHandler(handler)
        restore_level(logging_engine.DATAFLOW_LOGGER)
    assert len(got) == 1
    r = got[0]
    assert r.getMessage() == "Task 4 try 0 launched on executor threads" and r.levelno == logging.DEBUG
    assert r.created == 1700000000.25 and r.funcName == "update_task_state"
    assert getattr(r, "parsl.task") == 4 and getattr(r, "parsl.try_id") == 0
    assert getattr(r, "parsl.executor") == "threads"


def test_forward_level_follows_the_dataflow_logger():
    assert logging_engine.forward_level() == logging.WARNING  # the root's default
    logging.getLogger("pervade").setLevel(logging.DEBUG)
    try:
        assert logging_engine.forward_level() == logging.DEBUG
    finally:
        restore_level("pervade")
    logging.disable(logging.CRITICAL)
    try:
        assert logging_engine.forwarding_observer() is None
    finally:
        logging.disable(logging.NOTSET)


# -- pools and workers ------------------------------------------------------------------------

@python_app(executors=["htex"])
def remote_double(x):
    return 2 * x


def test_worker_debug_puts_pool_and_worker_lines_in_the_block_log(tmp_path, no_thread_leak):
    from conftest import pid_alive, wait_until
    from test_htex import T, htex_config, pool_tree_pids

    config = htex_config(tmp_path, worker_debug=True)
    config.initialize_logging = FileLogging(level=logging.DEBUG)  # the tries' lines are DEBUG
    kernel = parsl.load(config)
    pids = []
    try:
        executor = kernel.executors["htex"]
        assert wait_until(lambda: len(executor.pools()) == 1, T), executor.refusals()
        futures = [remote_double(i) for i in range(3)]
        assert [f.result(timeout=T) for f in futures] == [0, 2, 4]
        pids = pool_tree_pids()
    finally:
        kernel.cleanup()
    assert wait_until(lambda: not any(pid_alive(p) for p in pids), T), "pool processes left behind"
    block_log = os.path.join(kernel.run_dir, "htex", "block-0.log")
    # the engine's log says where each try ran
    engine = open(os.path.join(kernel.run_dir, "pervade.log")).read()
    for f in futures:
        assert re.search(rf"DEBUG: Task {f.tid} try 0 on executor htex: block 0, pool \S+, host \S+ parsl.task={f.tid} "
                         rf"parsl.try_id=0 parsl.executor=htex", engine), engine
    text = open(block_log).read()
    assert re.search(r"DEBUG pervade-pool\[\d+\] task \d+ to worker \d", text), text
    assert re.search(r"DEBUG pervade-pool\[\d+\] task \d+ finished with status 0", text), text
    # the records of the worker that ran them, in Parsl's layout (the other may not have started yet)
    assert re.search(r"pervade\.worker:\d+ main INFO: worker rank \d pid \d+ of pool \S+ \(block 0\) started", text), text


def test_each_block_has_a_directory_with_its_pools_and_workers_logs(tmp_path, no_thread_leak):
    # As Parsl's <run_dir>/<label>/block-N/<manager id>/: pool.log and worker_<rank>.log.
    from conftest import pid_alive, wait_until
    from test_htex import T, htex_config, pool_tree_pids

    kernel = parsl.load(htex_config(tmp_path, max_workers_per_node=1, provider=LocalProvider(init_blocks=2)))
    pids = []
    try:
        executor = kernel.executors["htex"]
        assert wait_until(lambda: len(executor.pools()) == 2, T), executor.refusals()
        assert [remote_double(i).result(timeout=T) for i in range(4)] == [0, 2, 4, 6]
        pools = {p["block_id"]: p["pool_id"] for p in executor.pools()}

        def worker_log(block, pool):
            path = os.path.join(kernel.run_dir, "htex", f"block-{block}", pool, "worker_0.log")
            return open(path).read() if os.path.exists(path) else ""

        # A pool registers before its worker has started; one that ran no task may still be starting it.
        assert wait_until(lambda: all(" started" in worker_log(b, p) for b, p in pools.items()), T)
        pids = pool_tree_pids()
    finally:
        kernel.cleanup()
    assert wait_until(lambda: not any(pid_alive(p) for p in pids), T), "pool processes left behind"
    assert sorted(pools) == ["0", "1"]
    for block, pool in pools.items():
        directory = os.path.join(kernel.run_dir, "htex", f"block-{block}", pool)
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
        assert sorted(os.listdir(directory)) == ["pool.log", "worker_0.log"]
        for name in os.listdir(directory):
            assert stat.S_IMODE(os.stat(os.path.join(directory, name)).st_mode) == 0o600
        pool_log = open(os.path.join(directory, "pool.log")).read()
        assert re.search(rf"INFO pervade-pool\[\d+\] pool {pool} \(block {block}\) on ", pool_log), pool_log
        assert "registered with the interchange" in pool_log
        text = worker_log(block, pool)
        assert "worker rank 0 pid" in text and f"of pool {pool} (block {block}) started" in text
    # The block's own log (the job's output) keeps every line, for the executor's error messages.
    assert "registered with the interchange" in open(os.path.join(kernel.run_dir, "htex", "block-1.log")).read()


def test_pool_logs_at_info_by_default(tmp_path, no_thread_leak):
    from test_htex import running_htex

    run = running_htex(tmp_path)
    executor = next(run)
    try:
        assert remote_double(5).result(timeout=60) == 10
        block_log = os.path.join(executor.run_dir, "htex", "block-0.log")
    finally:
        next(run, None)
    text = open(block_log).read()
    assert " INFO pervade-pool[" in text and "DEBUG" not in text, text


def test_pool_rejects_an_unknown_log_level():
    import subprocess

    from pervade.executors import pool_binary

    done = subprocess.run([pool_binary(), "--address", "127.0.0.1:1", "--log-level", "chatty"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0
    assert "--log-level must be debug, info, warning or error" in done.stderr


# -- the engine's events, end to end ----------------------------------------------------------

@python_app
def fail(x):
    raise ValueError(f"no {x}")


def test_engine_writes_each_task_event_with_parsl_extras(make_config, no_thread_leak):
    kernel = parsl.load(make_config(initialize_logging=FileLogging(level=logging.DEBUG)))
    first = double(1)
    second = double(first)
    failed = fail(3)
    assert second.result() == 4
    with pytest.raises(ValueError):
        failed.result()
    kernel.cleanup()
    lines = open(os.path.join(kernel.run_dir, "pervade.log")).read().splitlines()
    assert all(LINE.match(line) for line in lines), lines
    text = "\n".join(lines)
    a, b, c = first.tid, second.tid, failed.tid
    assert f"INFO: Starting DataFlowKernel: run id {kernel.run_id}" in text
    assert re.search(rf"DEBUG: Task {b} submitted for App double, initializing state to pending parsl.task={b} "
                     rf"parsl.app_name=double", text)
    assert re.search(rf"DEBUG: Task {b} waiting on task {a} parsl.task={b} parsl.app_name=double "
                     rf"parsl.dependency_task={a}", text)
    for tid in (a, b):
        assert re.search(rf"DEBUG: Task {tid} try 0 launched on executor threads parsl.task={tid} parsl.try_id=0 "
                         rf"parsl.app_name=double parsl.executor=threads parsl.task_state=launched", text)
        assert re.search(rf"DEBUG: Task {tid} changing state to exec_done parsl.task={tid} parsl.try_id=0", text)
    assert re.search(rf"ERROR: Task {c} changing state to failed \(fail_count 1\): .*no 3.* parsl.task={c}", text)
    assert re.search(r"INFO: DFK cleanup complete: 2 tasks completed, 1 failed", text)


def test_default_log_has_the_run_and_failures_but_no_debug_lines(make_config, no_thread_leak):
    kernel = parsl.load(make_config())
    assert double(1).result() == 2
    failed = fail(3)
    with pytest.raises(ValueError):
        failed.result()
    kernel.cleanup()
    text = open(os.path.join(kernel.run_dir, "pervade.log")).read()
    assert f"INFO: Starting DataFlowKernel: run id {kernel.run_id}" in text
    assert re.search(rf"ERROR: Task {failed.tid} changing state to failed \(fail_count 1\): .*no 3", text)
    assert "INFO: DFK cleanup complete: 1 tasks completed, 1 failed" in text
    assert " DEBUG: " not in text


def test_engine_records_reach_python_handlers_that_want_them(make_config, no_thread_leak):
    got = []

    class Keep(logging.Handler):
        def emit(self, record):
            got.append(record)

    handler = Keep()
    package = logging.getLogger("pervade")
    package.addHandler(handler)
    package.setLevel(logging.DEBUG)
    try:
        kernel = parsl.load(make_config(initialize_logging=False))
        first = double(1)
        second = double(first)
        assert second.result() == 4
        kernel.cleanup()
    finally:
        package.removeHandler(handler)
        restore_level("pervade")
    engine = [r for r in got if getattr(r, "pervade_engine", False)]
    assert {r.name for r in engine} == {"pervade.dataflow.dflow"}
    waiting = [r for r in engine if r.funcName == "submit" and hasattr(r, "parsl.dependency_task")]
    assert len(waiting) == 1 and getattr(waiting[0], "parsl.dependency_task") == first.tid
    launched = [r for r in engine if getattr(r, "parsl.task_state", None) == "launched"]
    assert sorted(getattr(r, "parsl.task") for r in launched) == sorted([first.tid, second.tid])
    assert all(getattr(r, "parsl.executor") == "threads" and getattr(r, "parsl.app_name") == "double"
               for r in launched)


def test_json_logging_has_the_engine_events(make_config, no_thread_leak):
    kernel = parsl.load(make_config(initialize_logging=JSONLogging()))
    fut = double(2)
    assert fut.result() == 4
    kernel.cleanup()
    records = [json.loads(line) for line in open(os.path.join(kernel.run_dir, "pervade.jsonlog"))]
    mine = [r for r in records if r.get("parsl.task") == str(fut.tid)]
    states = [r.get("parsl.task_state") for r in mine]
    assert "launched" in states and "exec_done" in states
    assert all(r["parsl.dfk"] == kernel.run_id and r["name"] == "pervade.dataflow.dflow" for r in mine)
