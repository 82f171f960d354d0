"""`make compat`: Parsl's own user-facing tests, from the Parsl package installed from PyPI, run
against pervade through `pervade run`'s import mapping (docs/compat.md).

    python compat/run.py [--modes threads,htex,local] [--folders test_python_apps,...] [--parsl]

Parsl (with the test folders inside its package) and the tests' dependencies go into their
own virtual environment, compat/.venv (made on first use, reused while its imports work). The
pervade that the interpreter running this script imports is made visible there with a .pth
file, after the venv's own packages. Each folder runs in its own pytest process, per mode:

    threads  --config parsl/tests/configs/local_threads.py  (Parsl's thread-executor config)
    htex     --config parsl/tests/configs/htex_local.py     (Parsl's local HTEX config)
    local    --config local                                 (each test module's own local_config)

--parsl runs the same tests on Parsl itself (no mapping), the baseline the target is measured
against. A test that hangs is stopped by pytest-timeout (--test-timeout s), recorded as failed,
and the folder goes on without it. Prints passed/failed/skipped per folder and mode, and writes
every outcome to compat/results/<engine>-<mode>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "benchmarks"))
from peers import BenchError, ensure_peers, log, run  # noqa: E402  (the venv and process helpers)

PARSL_VERSION = "2026.10.26"
PACKAGES = {"parsl": f"parsl[monitoring]=={PARSL_VERSION}", "pytest": "pytest>=7.4,<8",
            "pytest_timeout": "pytest-timeout", "pandas": "pandas"}
FOLDERS = ["test_python_apps", "test_bash_apps", "test_checkpointing", "test_docs", "test_error_handling",
           "test_regression", "test_staging", "test_threads", "test_shutdown", "test_monitoring", "test_scaling"]
MODES = {"threads": "configs/local_threads.py", "htex": "configs/htex_local.py", "local": "local"}
PTH = "pervade-under-test.pth"


def site_packages(python: Path) -> Path:
    code, out = run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], timeout=60)
    if code != 0:
        raise BenchError(f"cannot ask {python} for its site-packages:\n{out}")
    return Path(out.strip().splitlines()[-1])


def link_pervade(python: Path) -> None:
    """Makes the pervade this interpreter imports importable in the compat venv, after its own
    packages (so the tests' dependencies are the venv's)."""
    import pervade
    (site_packages(python) / PTH).write_text(str(Path(pervade.__file__).resolve().parent.parent) + "\n")


def outcomes(record: Path) -> tuple[dict, str | None, bool]:
    """From a record file: ({nodeid: (outcome, message)}, the test running when it ended, finished?)."""
    results, running, finished = {}, None, False
    if not record.exists():
        return results, running, finished
    for line in record.read_text().splitlines():
        r = json.loads(line)
        if r["when"] == "finish":
            finished = True
            continue
        if r["when"] == "start":
            running = r["nodeid"]
            continue
        node, outcome = r["nodeid"], r["outcome"]
        previous = results.get(node, ("passed", ""))
        if r["when"] in ("setup", "call", "collect") and outcome == "skipped":
            results[node] = ("skipped", r["message"])
        elif outcome == "failed":
            if previous[0] != "failed":  # the first failure says most
                results[node] = ("failed" if not r["xfail"] else "skipped", r["message"])
        elif node not in results:
            results[node] = (outcome, r["message"])
        if r["when"] == "teardown" and running == node:
            running = None
    return results, running, finished


def run_folder(python: Path, tests: Path, folder: str, mode: str, pervade: bool, work: Path, test_timeout: float,
               folder_timeout: float) -> dict:
    """Runs one folder in one mode until every test has an outcome; {nodeid: (outcome, message)}."""
    config = MODES[mode] if mode == "local" else str(tests / MODES[mode])
    record = work / f"{folder}.jsonl"
    record.unlink(missing_ok=True)
    deselect: list[str] = []
    results: dict = {}
    env = dict(os.environ, COMPAT_RECORD=str(record), PYTHONPATH=str(HERE), PYTHONDONTWRITEBYTECODE="1")
    env.pop("PERVADE_PARSL_IMPORTS", None)
    for attempt in range(50):  # each attempt gets past at least one hung test
        prefix = [str(python), "-m", "pervade", "run", "--parsl-tests", "-m", "pytest"] if pervade else [
            str(python), "-m", "pytest"]
        cmd = prefix + [str(tests / folder), "--config", config, "-p", "record", "-o", "addopts=", "-q",
                        "-p", "no:cacheprovider", "-k", "not cleannet",
                        f"--timeout={test_timeout:g}", "--timeout-method=thread"]
        for node in deselect:
            cmd += ["--deselect", node]
        try:
            _, output = run(cmd, timeout=folder_timeout, cwd=work, env=env)
            with (work / f"{folder}.log").open("a") as f:
                f.write(output)
        except BenchError as e:
            log(f"[compat] {folder} ({mode}): {e}")
        results, running, finished = outcomes(record)
        if finished:
            break
        if running is None or running in deselect:
            log(f"[compat] {folder} ({mode}) stopped outside a test; giving up on the rest")
            break
        results[running] = ("failed", f"hung: no outcome within {test_timeout:g} s (pytest-timeout stopped the run)")
        deselect = sorted(set(deselect) | set(results))
        with record.open("a") as f:  # keep the verdict for the next pass of outcomes()
            f.write(json.dumps({"nodeid": running, "when": "call", "outcome": "failed", "xfail": False,
                                "message": results[running][1]}) + "\n")
    return results


def summarize(results: dict) -> dict:
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    for outcome, _ in results.values():
        counts[outcome if outcome in counts else "failed"] += 1
    return counts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--folders", default=",".join(FOLDERS))
    parser.add_argument("--parsl", action="store_true", help="also run the tests on Parsl itself (the baseline)")
    parser.add_argument("--venv", type=Path, default=HERE / ".venv")
    parser.add_argument("--test-timeout", type=float, default=120, help="seconds one test may take")
    parser.add_argument("--folder-timeout", type=float, default=1800, help="seconds one folder run may take")
    parser.add_argument("--pip-timeout", type=float, default=1800)
    options = parser.parse_args(argv)
    modes = options.modes.split(",")
    folders = options.folders.split(",")
    try:
        python, versions = ensure_peers(options.venv, PACKAGES, options.pip_timeout)
        link_pervade(python)
        tests = site_packages(python) / "parsl" / "tests"
    except BenchError as e:
        log(f"[compat] {e}")
        return 1
    engines = ["pervade"] + (["parsl"] if options.parsl else [])
    out_dir = HERE / "results"
    out_dir.mkdir(exist_ok=True)
    table = []
    for engine in engines:
        for mode in modes:
            work = HERE / "work" / f"{engine}-{mode}"
            work.mkdir(parents=True, exist_ok=True)
            all_results = {}
            for folder in folders:
                started = time.monotonic()
                results = run_folder(python, tests, folder, mode, engine == "pervade", work, options.test_timeout,
                                     options.folder_timeout)
                all_results.update(results)
                c = summarize(results)
                table.append((engine, mode, folder, c))
                log(f"[compat] {engine:7} {mode:7} {folder:20} passed {c['passed']:4} failed {c['failed']:4} "
                    f"skipped {c['skipped']:4}  ({time.monotonic() - started:.0f} s)")
            (out_dir / f"{engine}-{mode}.json").write_text(json.dumps(
                {"parsl": versions.get("parsl"), "date": time.strftime("%Y-%m-%d"),
                 "results": {k: list(v) for k, v in sorted(all_results.items())}}, indent=1))
    print(f"\nParsl {versions.get('parsl')} user-facing tests (compat/results/*.json has every outcome)\n")
    print(f"{'engine':8} {'mode':8} {'folder':22} {'passed':>7} {'failed':>7} {'skipped':>8}")
    for engine, mode, folder, c in table:
        print(f"{engine:8} {mode:8} {folder:22} {c['passed']:7} {c['failed']:7} {c['skipped']:8}")
    for engine in engines:
        for mode in modes:
            total = {k: sum(c[k] for e, m, _, c in table if e == engine and m == mode) for k in ("passed", "failed",
                                                                                               "skipped")}
            print(f"{engine:8} {mode:8} {'all':22} {total['passed']:7} {total['failed']:7} {total['skipped']:8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
