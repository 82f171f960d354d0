"""The engine's log records reach Python handlers before the futures they describe complete (a
Parsl test's caplog must not get the previous test's records late)."""

import logging

import pytest

import pervade as parsl
from pervade import python_app

T = 60


@python_app
def fails(i):
    raise ValueError(f"failure {i}")


def failure_records(caplog, tid):
    return [r for r in caplog.records
            if r.name == "pervade.dataflow.dflow" and r.levelno == logging.ERROR and getattr(r, "parsl.task", None) == tid]


def test_a_failed_tasks_error_record_is_there_when_its_future_completes(load, caplog):
    caplog.set_level(logging.WARNING)
    load(executors=[parsl.ThreadPoolExecutor(max_threads=2)])
    seen_in_callback = {}
    futures = [fails(i) for i in range(50)]
    for f in futures:
        f.add_done_callback(lambda f: seen_in_callback.setdefault(f.tid, len(failure_records(caplog, f.tid))))
    for f in futures:
        with pytest.raises(ValueError):
            f.result(timeout=T)
        assert len(failure_records(caplog, f.tid)) == 1, f"no ERROR record for task {f.tid} when its future completed"
    assert all(seen_in_callback[f.tid] == 1 for f in futures), seen_in_callback
