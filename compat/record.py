"""pytest plugin of `make compat` (loaded with -p record): appends one JSON line per test phase
to the file named by COMPAT_RECORD as soon as it is known, so a run that hangs and is killed
still tells which tests finished and which one it was in."""

import json
import os

_file = None


def _write(**fields):
    global _file
    if _file is None:
        _file = open(os.environ["COMPAT_RECORD"], "a", buffering=1)
    _file.write(json.dumps(fields) + "\n")


def pytest_runtest_logstart(nodeid, location):
    _write(nodeid=nodeid, when="start")


def pytest_runtest_logreport(report):
    message = ""
    if report.failed and report.longrepr is not None:
        crash = getattr(report.longrepr, "reprcrash", None)
        message = crash.message if crash is not None else str(report.longrepr)
    elif report.skipped and isinstance(report.longrepr, tuple):
        message = report.longrepr[2]
    _write(nodeid=report.nodeid, when=report.when, outcome=report.outcome, xfail=hasattr(report, "wasxfail"),
           message=message[:500])


def pytest_collectreport(report):
    if report.failed:
        _write(nodeid=report.nodeid, when="collect", outcome="failed", xfail=False, message=str(report.longrepr)[-500:])


def pytest_sessionfinish(session, exitstatus):
    _write(nodeid="", when="finish", outcome=str(int(exitstatus)))
