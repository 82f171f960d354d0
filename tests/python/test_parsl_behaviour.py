"""Behaviour a Parsl script relies on, checked against what Parsl's own source does: where
errors surface, exception identity, dependency resolvers, load()'s context manager,
introspection (States, dfk().tasks, task records)."""

import os
import threading
from concurrent.futures import Future

import pytest
import typeguard

import pervade as parsl
from pervade import python_app
from pervade.dataflow.dependency_resolvers import (DEEP_DEPENDENCY_RESOLVER, SHALLOW_DEPENDENCY_RESOLVER,
                                                   DependencyResolver)
from pervade.dataflow.dflow import DataFlowKernel, DataFlowKernelLoader
from pervade.dataflow.states import FINAL_STATES, States

from test_htex import htex_config

HERE = os.path.dirname(os.path.abspath(__file__))

T = 60


@python_app
def square(x):
    return x * x


@python_app
def total(items):
    return sum(items)


@python_app
def identity(x):
    return x


@python_app
def fail(message):
    raise ValueError(message)


@python_app
def wait_for_event(ev):
    ev.wait()


@python_app
def started_then_wait(started, ev):
    started.set()
    ev.wait()


# ---------------------------------------------------------------- load() and its context manager


def test_must_first_load_config_message():
    with pytest.raises(parsl.NoDataFlowKernelError) as info:
        square(2)
    assert str(info.value) == "Must first load config"


def test_wrong_exit_mode_is_typeguards_error(run_dir):
    with pytest.raises(typeguard.TypeCheckError):
        parsl.Config(exit_mode="wrongmode", run_dir=run_dir)


def test_load_checks_its_argument_with_typeguard():
    with pytest.raises(typeguard.TypeCheckError):
        parsl.load("config.py")


def test_exit_skip_leaves_the_kernel_loaded(make_config):
    ev = threading.Event()
    try:
        with parsl.load(make_config(exit_mode="skip")) as dfk:
            fut = wait_for_event(ev)
        assert parsl.dfk() is dfk and not fut.done()
    finally:
        ev.set()
    fut.result(timeout=T)
    dfk.cleanup()


def test_exit_wait_waits_then_cleans_up(make_config):
    with parsl.load(make_config(exit_mode="wait")) as dfk:
        fut = square(3)
    assert fut.done() and dfk.cleanup_called and DataFlowKernelLoader._dfk is None


def test_exit_wait_with_an_exception_does_not_wait(make_config):
    with pytest.raises(ValueError):
        with parsl.load(make_config(exit_mode="wait")) as dfk:
            never = Future()
            dependent = square(never)
            fail("boom").result(timeout=T)
    assert dfk.cleanup_called and DataFlowKernelLoader._dfk is None
    assert not dependent.done()  # as Parsl: it waits for a future nothing will complete


# ---------------------------------------------------------------- errors on the future


def test_memo_key_error_is_on_the_future(dfk):
    class Unknown:
        pass

    @python_app(cache=True)
    def memoized(x):
        return 1

    fut = memoized(Unknown())  # not raised here, as in Parsl
    with pytest.raises(ValueError, match="unknown type for memoization"):
        fut.result(timeout=T)


def test_raising_id_for_memo_handler_is_on_the_future_after_dependencies(dfk):
    class Refuses:
        pass

    @parsl.id_for_memo.register(Refuses)
    def _(obj, output_ref=False):
        raise RuntimeError("no key for you")

    @python_app(cache=True)
    def memoized(x, y):
        return 1

    gate = Future()
    fut = memoized(Refuses(), gate)
    assert not fut.done()  # the key is made once the dependencies are done, as Parsl launches
    gate.set_result(1)
    with pytest.raises(RuntimeError, match="no key for you"):
        fut.result(timeout=T)


@python_app(cache=True)
def fails_with_uuid():
    import uuid
    raise RuntimeError(str(uuid.uuid4()))


@python_app(cache=False)
def fails_uncached():
    raise RuntimeError("again")


def test_exceptions_are_memoized_only_with_cache(dfk):
    first = fails_with_uuid().exception(timeout=T)
    assert fails_with_uuid().exception(timeout=T) is first
    recalled = fails_with_uuid()
    recalled.exception(timeout=T)
    assert recalled.task_record["status"] == States.failed
    plain = fails_uncached().exception(timeout=T)
    assert fails_uncached().exception(timeout=T) is not plain


def test_memoized_exceptions_are_not_checkpointed(make_config):
    with parsl.load(make_config(memoizer=parsl.BasicMemoizer(checkpoint_mode="task_exit"))) as dfk:
        checkpoint = [os.path.join(dfk.run_dir, "checkpoint")]
        first = fails_with_uuid().exception(timeout=T)
    with parsl.load(make_config(memoizer=parsl.BasicMemoizer(checkpoint_files=checkpoint))):
        again = fails_with_uuid().exception(timeout=T)
    assert again.args[0] != first.args[0]


def test_last_checkpoint_holds_results_recalled_from_earlier_runs(make_config, run_dir):
    # Parsl's test_get_last_checkpoint: a result two runs old is still found from the last one.
    @python_app(cache=True)
    def uuid_app(x):
        import uuid
        return uuid.uuid4()

    def run(files):
        memoizer = parsl.BasicMemoizer(checkpoint_mode="task_exit", checkpoint_files=files)
        with parsl.load(make_config(memoizer=memoizer)):
            return uuid_app("p").result(timeout=T)

    first = run([])
    assert run(parsl.get_last_checkpoint(run_dir)) == first
    assert run(parsl.get_last_checkpoint(run_dir)) == first


# ---------------------------------------------------------------- DependencyError


def test_dependency_error_names_a_plain_future_by_its_repr_when_it_failed(dfk):
    plain = Future()
    dependent = square(plain)
    plain.set_exception(KeyError("gone"))
    error = dependent.exception(timeout=T)
    assert isinstance(error, parsl.DependencyError)
    (cause, description), = error.dependent_exceptions_tids
    assert description == repr(plain) and "finished raised KeyError" in description
    assert cause is plain.exception() and error.__cause__ is cause


# ---------------------------------------------------------------- dependency resolvers


def test_shallow_resolver_passes_nested_futures_through(load):
    load(dependency_resolver=SHALLOW_DEPENDENCY_RESOLVER)

    @python_app
    def kinds(items):
        return [type(i).__name__ for i in items]

    inner = square(2)
    inner.result(timeout=T)
    assert kinds([inner, 1]).result(timeout=T) == ["AppFuture", "int"]


def test_deep_resolver_waits_for_and_unwraps_nested_futures(load):
    load(dependency_resolver=DEEP_DEPENDENCY_RESOLVER)
    gate = Future()
    nested = [square(2), (square(3), {"k": square(4)}), {identity(5)}]

    @python_app
    def flatten(items, inputs=()):
        (a, (b, d), s), = (items,)
        return a, b, d["k"], sorted(s), list(inputs)

    fut = flatten(nested, inputs=[[gate]])
    assert not fut.done()
    gate.set_result("g")
    assert fut.result(timeout=T) == (4, 9, 16, [5], [["g"]])


def test_deep_resolver_reports_a_failed_nested_future(load):
    load(dependency_resolver=DEEP_DEPENDENCY_RESOLVER)
    error = total([square(1), fail("inner")]).exception(timeout=T)
    assert isinstance(error, parsl.DependencyError)
    assert isinstance(error.__cause__, ValueError) and str(error.__cause__) == "inner"


class Box:
    def __init__(self, content):
        self.content = content


def test_user_resolver(load):
    def gather(o):
        if isinstance(o, Future):
            return [o]
        return [o.content] if isinstance(o, Box) and isinstance(o.content, Future) else []

    def unwrap(o):
        if isinstance(o, Future):
            return o.result()
        return Box(o.content.result()) if isinstance(o, Box) and isinstance(o.content, Future) else o

    load(dependency_resolver=DependencyResolver(traverse_to_gather=gather, traverse_to_unwrap=unwrap))

    @python_app
    def open_box(box, plain):
        return box.content + plain

    gate = Future()
    fut = open_box(Box(gate), square(2))
    assert not fut.done()
    gate.set_result(10)
    assert fut.result(timeout=T) == 14


@python_app(executors=["htex"])
def htex_total(items):
    return sum(items)


def test_deep_resolver_on_htex(tmp_path, no_thread_leak, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [HERE, os.environ.get("PYTHONPATH")])))
    config = htex_config(tmp_path)
    config.dependency_resolver = DEEP_DEPENDENCY_RESOLVER
    dfk = parsl.load(config)
    try:
        gate = Future()
        fut = htex_total([htex_total([1, 2]), gate, 3])
        gate.set_result(4)
        assert fut.result(timeout=T) == 10
    finally:
        dfk.cleanup()


# ---------------------------------------------------------------- one exception object


def test_exception_is_one_object_through_a_chain_of_dependents(dfk):
    failed = fail("root")
    first = square(failed)
    second = square(first)
    root = failed.exception(timeout=T)
    assert failed.exception() is root
    first_error, second_error = first.exception(timeout=T), second.exception(timeout=T)
    assert first_error.__cause__ is root and second_error.__cause__ is root
    assert second_error.dependent_exceptions_tids[0][0] is first_error
    assert first.exception() is first_error


@python_app(executors=["htex"])
def htex_fail(message):
    raise ValueError(message)


@python_app(executors=["htex"])
def htex_square(x):
    return x * x


def test_exception_from_a_pool_is_one_object(tmp_path, no_thread_leak, monkeypatch):
    # A pool's exception arrives pickled: it is unpickled once and every holder shares it.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [HERE, os.environ.get("PYTHONPATH")])))
    dfk = parsl.load(htex_config(tmp_path))
    try:
        failed = htex_fail("remote")
        dependents = [htex_square(failed), htex_square(failed), square(failed)]
        root = failed.exception(timeout=T)
        assert isinstance(root, ValueError) and failed.exception() is root
        for d in dependents:
            error = d.exception(timeout=T)
            assert error.__cause__ is root and error.dependent_exceptions_tids[0][0] is root
    finally:
        dfk.cleanup()


# ---------------------------------------------------------------- introspection


def test_states_have_parsls_values():
    assert {s.name: s.value for s in States if s is not States.cancelled} == {
        "pending": 0, "running": 2, "exec_done": 3, "failed": 4, "dep_fail": 5, "launched": 7,
        "fail_retryable": 8, "memo_done": 9, "joining": 10, "running_ended": 11}
    assert str(States.exec_done) == "States.exec_done"
    assert States.failed in FINAL_STATES and States.launched not in FINAL_STATES


def test_job_status_has_parsls_text():
    from pervade.providers import JobState, JobStatus
    assert str(JobState.RUNNING) == "JobState.RUNNING"
    status = JobStatus(JobState.FAILED, "no nodes")
    assert str(status) == "JobState.FAILED (no nodes)" and status.status_name == "FAILED"
    assert repr(status) == (f"<pervade.providers.JobStatus object at {hex(id(status))}, "
                            "state=JobState.FAILED message=no nodes>")
    assert str(JobStatus(JobState.PENDING)) == "JobState.PENDING"


def test_tasks_hold_unfinished_task_records(dfk):
    assert parsl.dfk().config is dfk.config
    ev = threading.Event()
    x = wait_for_event(ev)
    try:
        record = dfk.tasks[x.tid]
        assert record["app_fu"] is x and record["id"] == x.tid and record["func_name"] == "wait_for_event"
        assert record["func"].__name__ == "wait_for_event" and record["args"] == (ev,)
        assert isinstance(record["status"], States) and record["status"] in (States.pending, States.launched)
        assert record["time_invoked"] is not None and record["time_returned"] is None
        assert {"depends", "try_id", "fail_count", "fail_history", "from_memo", "hashsum", "executor",
                "kwargs", "dfk", "memoize", "join", "resource_specification"} <= record.keys()
    finally:
        ev.set()
    x.result(timeout=T)
    assert x.tid not in dfk.tasks  # dropped as Parsl's garbage_collect does, before the result
    final = x.task_record
    assert final["status"] == States.exec_done and final["time_returned"] >= final["time_invoked"]


def test_tasks_are_kept_without_garbage_collect(load):
    dfk = load(garbage_collect=False)
    f = square(2)
    f.result(timeout=T)
    assert dfk.tasks[f.tid]["status"] == States.exec_done


def test_task_record_depends_and_memo_fields(dfk):
    @python_app(cache=True)
    def memoized(x):
        return x

    gate = Future()
    fut = memoized(gate)
    assert fut.task_record["depends"] == [gate]
    gate.set_result(3)
    fut.result(timeout=T)
    again = memoized(3)
    again.result(timeout=T)
    record = again.task_record
    assert record["from_memo"] and record["status"] == States.memo_done and len(record["hashsum"]) == 64


def test_task_state_counts(dfk):
    before = dfk.task_state_counts
    assert set(before) == set(States)
    square(square(fail("x"))).exception(timeout=T)
    dfk.wait_for_current_tasks()
    after = dfk.task_state_counts
    assert after[States.failed] == before[States.failed] + 1
    assert after[States.dep_fail] == before[States.dep_fail] + 2
    assert after[States.pending] == after[States.launched] == 0


def test_memoizer_checkpoint(load):
    dfk = load(memoizer=parsl.BasicMemoizer(checkpoint_mode="manual"))

    @python_app(cache=True)
    def memoized(x):
        return x

    memoized(1).result(timeout=T)
    assert dfk.memoizer.checkpoint() == 1


def test_retry_handler_gets_parsls_task_record(load):
    seen = []

    def handler(exception, record):
        seen.append((exception, dict(record)))
        return 1

    load(retries=1, retry_handler=handler)
    error = fail("again").exception(timeout=T)
    assert [r["try_id"] for _, r in seen] == [0, 1]
    exception, record = seen[-1]
    assert exception is error and record["fail_history"] == [repr(error)]
    assert record["func"].__name__ == "fail" and record["func_name"] == "fail" and record["args"] == ("again",)
    assert isinstance(record["status"], States) and record["fail_count"] == 2


def test_python_walltime_keeps_the_apps_names(dfk):
    @python_app
    def my_app(walltime=6):
        return 7

    f = my_app()
    assert f.result(timeout=T) == 7
    assert f.task_record["func"].__name__ == "my_app" and f.task_record["func_name"] == "my_app"


def test_bash_app_record_keeps_the_apps_names(dfk, tmp_path):
    @parsl.bash_app
    def true_app():
        return "true"

    f = true_app()
    assert f.result(timeout=T) == 0
    assert f.task_record["func"].__name__ == "true_app"


# ---------------------------------------------------------------- waiting stays interruptible


class Interrupted(Exception):
    pass


def interrupted_while(wait, dfk):
    """Runs wait() while a task blocks and another thread sends SIGUSR1 to the main thread until
    its handler (which raises Interrupted) has run, or 10 s passed; then frees the task. Returns
    the blocked task's future."""
    import signal

    raised = []

    def handler(signum, frame):
        if not raised:  # once: later signals from the sender are ignored
            raised.append(signum)
            raise Interrupted()

    previous = signal.signal(signal.SIGUSR1, handler)
    ev, started = threading.Event(), threading.Event()
    blocked = started_then_wait(started, ev)
    assert started.wait(T), "the blocking task never started"  # else cleanup fails it unstarted
    gave_up = threading.Event()
    stop = threading.Event()

    def send():
        main = threading.main_thread().ident
        for _ in range(200):
            if stop.wait(0.05):
                break
            signal.pthread_kill(main, signal.SIGUSR1)
        else:
            gave_up.set()
        ev.set()

    sender = threading.Thread(target=send)
    sender.start()
    try:
        with pytest.raises(Interrupted):
            wait()
        assert not gave_up.is_set(), "the handler ran only after the wait ended"
    finally:
        stop.set()
        sender.join()
        signal.signal(signal.SIGUSR1, previous)
    return blocked


def test_signal_handlers_run_while_waiting_for_tasks(dfk):
    blocked = interrupted_while(dfk.wait_for_current_tasks, dfk)
    assert blocked.result(timeout=T) is None


def test_signal_handlers_run_while_cleaning_up(dfk):
    blocked = interrupted_while(dfk.cleanup, dfk)
    assert dfk.cleanup_called
    dfk.cleanup()  # waits for the engine's cleanup, which went on, and finishes it
    assert DataFlowKernelLoader._dfk is None
    assert isinstance(blocked.exception(timeout=T), parsl.DataFlowKernelClosed)  # stopped by cleanup


def test_task_count_is_the_number_of_ids_handed_out(dfk):
    assert dfk.task_count == 0
    futures = [square(i) for i in range(3)]
    assert dfk.task_count == 3
    assert [f.tid for f in futures] == [0, 1, 2]
    assert square(futures[0]).tid == dfk.task_count - 1 == 3
