"""Memoization: cache=True answers a repeated call from the memo table (state memo_done)
without running it; keys follow Parsl's rules (ignore_for_cache, AUTO_LOGNAME, outputs=,
id_for_memo for user types); failures are never reused."""

import os

import pytest

import pervade as parsl
from pervade import AUTO_LOGNAME, bash_app, python_app
from pervade.memoization import id_for_memo, make_key

T = 60


def ran_file(tmp_path):
    return str(tmp_path / "ran.txt")


def record_run(path, tag):
    # O_APPEND: one write per task, whole lines even from several threads or processes.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        os.write(fd, f"{tag}\n".encode())
    finally:
        os.close(fd)


def runs(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return f.read().split()


@python_app(cache=True)
def square(x, ran, label=None):
    record_run(ran, f"square-{x}")
    return x * x


@python_app
def square_uncached(x, ran):
    record_run(ran, f"uncached-{x}")
    return x * x


def test_hit_and_miss(dfk, tmp_path):
    ran = ran_file(tmp_path)
    first = square(3, ran)
    assert first.result(timeout=T) == 9
    assert first.task_status() == "exec_done"
    again = square(3, ran)
    assert again.result(timeout=T) == 9
    assert again.task_status() == "memo_done"
    other = square(4, ran)
    assert other.result(timeout=T) == 16
    assert other.task_status() == "exec_done"
    assert square_uncached(again, ran).result(timeout=T) == 81  # a memoized value feeds a dependent
    assert runs(ran) == ["square-3", "square-4", "uncached-9"]


def test_dfk_submit_with_cache(dfk, tmp_path):
    ran = ran_file(tmp_path)

    def triple(x):
        record_run(ran, f"triple-{x}")
        return 3 * x

    futures = [dfk.submit(triple, app_args=(2,), cache=True) for _ in range(2)]
    futures[0].result(timeout=T)
    again = dfk.submit(triple, app_args=(2,), cache=True)
    assert again.result(timeout=T) == 6
    assert again.task_status() == "memo_done"
    assert runs(ran).count("triple-2") <= 2  # the first two may both run: neither was done yet


def test_without_cache_every_call_runs(dfk, tmp_path):
    ran = ran_file(tmp_path)
    for _ in range(2):
        assert square_uncached(3, ran).result(timeout=T) == 9
    assert runs(ran) == ["uncached-3", "uncached-3"]


def test_app_cache_false_disables_memoization(load, tmp_path):
    load(app_cache=False)
    ran = ran_file(tmp_path)
    for _ in range(2):
        fut = square(3, ran)
        assert fut.result(timeout=T) == 9
        assert fut.task_status() == "exec_done"
    assert runs(ran) == ["square-3", "square-3"]


def test_ignore_for_cache(dfk, tmp_path):
    ran = ran_file(tmp_path)

    @python_app(cache=True, ignore_for_cache=["label"])
    def tagged(x, ran, label=None):
        record_run(ran, f"tagged-{x}-{label}")
        return x

    assert tagged(1, ran, label="a").result(timeout=T) == 1
    second = tagged(1, ran, label="b")
    assert second.result(timeout=T) == 1
    assert second.task_status() == "memo_done"
    # Not ignored by an app without ignore_for_cache.
    assert square(2, ran, label="a").result(timeout=T) == 4
    not_ignored = square(2, ran, label="b")
    assert not_ignored.result(timeout=T) == 4
    assert not_ignored.task_status() == "exec_done"
    assert runs(ran) == ["tagged-1-a", "square-2", "square-2"]


def test_exceptions_are_memoized_in_memory(dfk, tmp_path):
    # As Parsl's BasicMemoizer: a failure is memoized too, and the same exception object is
    # reused (never checkpointed: see test_parsl_behaviour).
    ran = ran_file(tmp_path)

    @python_app(cache=True)
    def fails(x, ran):
        record_run(ran, f"fails-{x}")
        raise ValueError(x)

    first = fails(1, ran).exception(timeout=T)
    assert isinstance(first, ValueError)
    assert all(fails(1, ran).exception(timeout=T) is first for _ in range(2))
    assert runs(ran) == ["fails-1"]


class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y


def test_id_for_memo_hook_for_a_user_type(dfk, tmp_path):
    ran = ran_file(tmp_path)

    @python_app(cache=True)
    def norm(p, ran):
        record_run(ran, f"norm-{p.x}-{p.y}")
        return p.x * p.x + p.y * p.y

    class Unknown:
        pass

    with pytest.raises(ValueError, match="unknown type for memoization"):
        norm(Unknown(), ran).result(timeout=T)  # on the future, as in Parsl

    @id_for_memo.register(Point)
    def _(p, output_ref=False):
        return id_for_memo((p.x, p.y))

    assert norm(Point(3, 4), ran).result(timeout=T) == 25
    hit = norm(Point(3, 4), ran)  # another object with the same value
    assert hit.result(timeout=T) == 25
    assert hit.task_status() == "memo_done"
    assert runs(ran) == ["norm-3-4"]


def test_auto_logname_streams_are_ignored(dfk, tmp_path):
    ran = ran_file(tmp_path)

    @bash_app(cache=True)
    def echo(msg, ran, stdout=None, stderr=None):
        return f"echo {msg} >> {ran}"

    first = echo("hi", ran, stdout=AUTO_LOGNAME, stderr=AUTO_LOGNAME)
    assert first.result(timeout=T) == 0
    second = echo("hi", ran, stdout=AUTO_LOGNAME, stderr=AUTO_LOGNAME)
    assert second.result(timeout=T) == 0
    assert second.task_status() == "memo_done"
    assert first.stdout != second.stdout  # each call had its own log path, yet they matched
    # An explicit path is part of the key.
    third = echo("hi", ran, stdout=str(tmp_path / "out.txt"))
    assert third.result(timeout=T) == 0
    assert third.task_status() == "exec_done"
    assert runs(ran) == ["hi", "hi"]


def test_futures_in_arguments_are_keyed_by_their_values(dfk, tmp_path):
    ran = ran_file(tmp_path)
    a = square(2, ran)
    b = square(a, ran)  # 16, keyed once a is done
    assert b.result(timeout=T) == 16
    c = square(square_uncached(2, ran), ran)  # a different future with the same value 4
    assert c.result(timeout=T) == 16
    assert c.task_status() == "memo_done"
    d = square(parsl.python_app(lambda: 5)(), ran)
    assert d.result(timeout=T) == 25
    assert d.task_status() == "exec_done"
    assert sorted(runs(ran)) == sorted(["square-2", "square-4", "uncached-2", "square-5"])


def test_a_failed_dependency_is_a_dependency_error(dfk, tmp_path):
    @python_app
    def bad():
        raise KeyError("x")

    with pytest.raises(parsl.DependencyError):
        square(bad(), ran_file(tmp_path)).result(timeout=T)


def test_unpicklable_result_is_returned_but_not_memoized(dfk, tmp_path, caplog):
    ran = ran_file(tmp_path)

    @python_app(cache=True)
    def make_lock(ran):
        import threading
        record_run(ran, "lock")
        return threading.Lock()

    assert make_lock(ran).result(timeout=T) is not None
    second = make_lock(ran)
    second.result(timeout=T)
    assert second.task_status() == "exec_done"
    assert runs(ran) == ["lock", "lock"]
    assert "cannot be pickled" in caplog.text


def test_key_rules():
    def f(x):
        return x

    def g(x):
        return x + 1

    g.__qualname__ = f.__qualname__  # same name, other code
    assert make_key(f, (1,), {}) == make_key(f, (1,), {})
    assert make_key(f, (1,), {}) != make_key(f, (2,), {})
    assert make_key(f, (1,), {}) != make_key(g, (1,), {})
    assert make_key(f, (), {"a": 1, "b": 2}) == make_key(f, (), {"b": 2, "a": 1})
    assert make_key(f, (), {"a": 1, "b": 2}, ["b"]) == make_key(f, (), {"a": 1, "b": 3}, ["b"])
    assert make_key(f, (), {"a": 1, "b": 2}, ["b"]) == make_key(f, (), {"a": 1})
    assert make_key(f, ([1, 2],), {}) != make_key(f, ((1, 2),), {})
    assert len(make_key(f, (1,), {})) == 32
    # Equal values of different types, and values that differ only in object identity.
    assert len({make_key(f, (v,), {}) for v in (1, 1.0, True, "1", b"1", (1,), [1], {"1": 1})}) == 8
    a, b = "x" * 100, "".join(["x"] * 100)
    assert a is not b and make_key(f, ((a, a),), {}) == make_key(f, ((a, b),), {})
    assert make_key(f, ({"a": 1, "b": 2},), {}) == make_key(f, ({"b": 2, "a": 1},), {})
    assert make_key(f, ({"a": 1},), {}) != make_key(f, ((("a", 1),),), {})
    # The slow path (nested values) is just as insensitive to order and identity.
    assert make_key(f, ([{"a": [1]}, {"b": 2}],), {}) == make_key(f, ([{"a": [1]}, {"b": 2}],), {})


def test_outputs_are_keyed_by_name(dfk, tmp_path):
    ran = ran_file(tmp_path)

    @bash_app(cache=True)
    def touch(ran, outputs=()):
        return f"echo touch >> {ran}; touch {outputs[0].filepath}"

    out = parsl.File(str(tmp_path / "a.txt"))
    assert touch(ran, outputs=[out]).result(timeout=T) == 0
    same = touch(ran, outputs=[parsl.File(str(tmp_path / "a.txt"))])
    assert same.result(timeout=T) == 0
    assert same.task_status() == "memo_done"
    assert touch(ran, outputs=[parsl.File(str(tmp_path / "b.txt"))]).result(timeout=T) == 0
    assert runs(ran) == ["touch", "touch"]


def test_memo_hits_on_the_high_throughput_executor(tmp_path, no_thread_leak):
    from test_htex import htex_config, pool_tree_pids
    from conftest import pid_alive, wait_until

    base = htex_config(tmp_path)
    config = parsl.Config(executors=base.executors, run_dir=base.run_dir, checkpoint_mode="task_exit")
    dfk = parsl.load(config)

    @python_app(cache=True)
    def square(x, ran):  # local: shipped by value, the workers cannot import this test module
        import os
        fd = os.open(ran, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        os.write(fd, f"square-{x}\n".encode())
        os.close(fd)
        return x * x

    try:
        ran = ran_file(tmp_path)
        first = square(7, ran)
        assert first.result(timeout=T) == 49
        again = square(7, ran)
        assert again.result(timeout=T) == 49
        assert again.task_status() == "memo_done"
        chained = square(square(7, ran), ran)  # a memoized result feeds a remote task
        assert chained.result(timeout=T) == 49 * 49
        assert runs(ran) == ["square-7", "square-49"]
    finally:
        pids = pool_tree_pids()
        dfk.cleanup()
        parsl.clear()
        assert wait_until(lambda: not any(pid_alive(p) for p in pids), T), "pool processes left behind"


@python_app
def fresh_token(tag):
    import uuid

    return f"{tag}-{uuid.uuid4()}"


@parsl.join_app(cache=True)
def joined_token(tag, ran):
    record_run(ran, f"join-{tag}")
    return fresh_token(tag)


@parsl.join_app(cache=True)
def joined_tokens(tag):
    return [fresh_token(tag), fresh_token(tag)]


@pytest.mark.parametrize("checkpoint_mode", [None, "task_exit"])
def test_join_apps_are_memoized(load, tmp_path, checkpoint_mode):
    ran_file = str(tmp_path / "ran.txt")
    load(memoizer=parsl.BasicMemoizer(checkpoint_mode=checkpoint_mode))
    first = joined_token("a", ran_file)
    token = first.result(timeout=T)
    again = joined_token("a", ran_file)
    assert again.result(timeout=T) == token and again.task_status() == "memo_done"
    assert joined_token("b", ran_file).result(timeout=T) != token
    assert runs(ran_file) == ["join-a", "join-b"]  # the memoized call ran neither the join nor its task
    tokens = joined_tokens("c").result(timeout=T)
    assert joined_tokens("c").result(timeout=T) == tokens and len(set(tokens)) == 2


def test_memoized_join_apps_on_a_pool(tmp_path, no_thread_leak):
    from test_htex import htex_config

    @parsl.join_app(cache=True)
    def pool_token(tag):
        return remote_token(tag)

    dfk = parsl.load(htex_config(tmp_path))
    try:
        token = pool_token("p").result(timeout=T)
        assert pool_token("p").result(timeout=T) == token
    finally:
        dfk.cleanup()


@python_app(executors=["htex"])
def remote_token(tag):
    import uuid

    return f"{tag}-{uuid.uuid4()}"


class NotSevenMemoizer(parsl.BasicMemoizer):
    """Parsl's plug-in pattern: veto some calls, let the table answer the others."""

    asked = []

    def check_memo(self, task):
        self.asked.append((task["func_name"], tuple(task["args"])))
        if task["args"][0] == 7:
            return None
        answer = super().check_memo(task)
        assert task["hashsum"] and len(task["hashsum"]) == 64
        return answer


@python_app(cache=True)
def token(x):
    import uuid

    return f"{x}-{uuid.uuid4()}"


def test_memoizer_plugin_vetoes_calls(load):
    from pervade.dataflow.taskrecord import TaskRecord  # noqa: F401 - Parsl's type, importable

    load(memoizer=NotSevenMemoizer())
    first = token(0).result(timeout=T)
    assert token(0).result(timeout=T) == first
    assert token(value_of(0)).result(timeout=T) == first  # asked once the future has its value
    sevens = {token(7).result(timeout=T) for _ in range(3)}
    assert len(sevens) == 3, "a vetoed call is neither recalled nor recorded"
    assert ("token", (0,)) in NotSevenMemoizer.asked and ("token", (7,)) in NotSevenMemoizer.asked


@python_app
def value_of(x):
    return x


class ResultSupplyingMemoizer(parsl.BasicMemoizer):
    def check_memo(self, task):
        from concurrent.futures import Future

        f = Future()
        f.set_result("made up")
        return f


def test_memoizer_plugin_cannot_supply_results(load):
    load(memoizer=ResultSupplyingMemoizer())
    with pytest.raises(TypeError, match="the memo table is the engine's"):
        token(1).result(timeout=T)
