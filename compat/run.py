"""`make compat`: Parsl's own user-facing tests, from the Parsl package installed from PyPI, run
against pervade through `pervade run`'s import mapping (docs/compat.md).

    python compat/run.py [--modes threads,htex,local] [--folders test_python_apps,...] [--engines pervade,parsl]

Parsl (with the test folders inside its package) and the tests' dependencies go into their
own virtual environment, compat/.venv (made on first use, reused while its imports work). The
pervade that the interpreter running this script imports is made visible there with a .pth
file, after the venv's own packages. Each folder runs in its own pytest process, per mode:

    threads  --config parsl/tests/configs/local_threads.py  (Parsl's thread-executor config)
    htex     --config parsl/tests/configs/htex_local.py     (Parsl's local HTEX config)
    local    --config local                                 (each test module's own local_config)

--engines parsl runs the same tests on Parsl itself (no mapping), the baseline the target is
measured against (the share of the tests passing on Parsl that pass on pervade is printed when
both engines' results are there). A test that hangs is stopped by pytest-timeout (--test-timeout s)
or, when that cannot act, by killing the run; it is recorded as failed and the folder goes on
without it. Prints passed/failed/skipped per folder and mode, and writes
every outcome to compat/results/<engine>-<mode>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "benchmarks"))
from peers import BenchError, ensure_peers, log, run  # noqa: E402  (the venv and process helpers)

PARSL_VERSION = "2026.10.26"
# Parsl and its tests' dependencies, and pervade's own (pyproject.toml) for the pervade made visible there.
PACKAGES = {"parsl": f"parsl[monitoring]=={PARSL_VERSION}", "pytest": "pytest>=7.4,<8",
            "pytest_timeout": "pytest-timeout", "pandas": "pandas", "cloudpickle": "cloudpickle>=2.0",
            "msgpack": "msgpack>=1.0"}
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


OUTCOMES = ("passed", "failed", "teardown_error", "skipped")


def outcomes(record: Path) -> tuple[dict, str | None, bool]:
    """From a record file: ({nodeid: (outcome, message)}, the test running when it ended, finished?).
    The outcome is one of OUTCOMES: a test whose collection, setup or call failed has failed (an
    xfail counts as skipped); one that passed but whose teardown failed (Parsl's conftest checks
    there that no task is left) is a teardown_error."""
    phases: dict = {}
    running, finished = None, False
    if record.exists():
        for line in record.read_text().splitlines():
            r = json.loads(line)
            if r["when"] == "finish":
                finished = True
            elif r["when"] == "start":
                running = r["nodeid"]
            else:
                phases.setdefault(r["nodeid"], {}).setdefault(r["when"], r)
                if r["when"] == "teardown" and r["nodeid"] == running:
                    running = None
    results = {}
    for node, p in phases.items():
        first_bad = next((p[w] for w in ("collect", "setup", "call") if w in p and p[w]["outcome"] != "passed"), None)
        if first_bad is not None:
            skipped = first_bad["outcome"] == "skipped" or first_bad["xfail"]
            results[node] = ("skipped" if skipped else "failed", first_bad["message"])
        elif "teardown" in p and p["teardown"]["outcome"] == "failed":
            results[node] = ("teardown_error", p["teardown"]["message"])
        else:
            results[node] = ("passed", "")
    return results, running, finished


def run_folder(python: Path, tests: Path, folder: str, mode: str, pervade: bool, work: Path, test_timeout: float,
               folder_timeout: float) -> dict:
    """Runs one folder in one mode until every test has an outcome; {nodeid: (outcome, message)}."""
    config = MODES[mode] if mode == "local" else str(tests / MODES[mode])
    record = work / f"{folder}.jsonl"
    record.unlink(missing_ok=True)
    deselect: list[str] = []
    results: dict = {}
    # The venv's bin first, as if activated: Parsl starts its interchange and workers by command name.
    env = dict(os.environ, COMPAT_RECORD=str(record), PYTHONPATH=str(HERE), PYTHONDONTWRITEBYTECODE="1",
               PATH=f"{python.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("PERVADE_PARSL_IMPORTS", None)
    for attempt in range(50):  # each attempt gets past at least one hung test
        prefix = [str(python), "-m", "pervade", "run", "--parsl-tests", "-m", "pytest"] if pervade else [
            str(python), "-m", "pytest"]
        cmd = prefix + [str(tests / folder), "--config", config, "-p", "record", "-c", str(HERE / "pytest.ini"),
                        "--rootdir", str(tests), "-q",
                        "-p", "no:cacheprovider", "-k", "not cleannet", "--continue-on-collection-errors",
                        f"--timeout={test_timeout:g}", "--timeout-method=thread"]
        for node in deselect:
            cmd += ["--deselect", node]
        if not run_watched(cmd, work, env, work / f"{folder}.log", record, test_timeout + 60, folder_timeout):
            log(f"[compat] {folder} ({mode}): no progress for {test_timeout + 60:g} s, stopped")
        results, running, finished = outcomes(record)
        if finished:
            break
        if running is None or running in deselect:
            log(f"[compat] {folder} ({mode}) stopped outside a test; giving up on the rest")
            break
        results[running] = ("failed", f"hung: no outcome within {test_timeout:g} s (the run was stopped)")
        deselect = sorted(set(deselect) | set(results))
        with record.open("a") as f:  # keep the verdict for the next pass of outcomes()
            f.write(json.dumps({"nodeid": running, "when": "collect", "outcome": "failed", "xfail": False,
                                "message": results[running][1]}) + "\n")
    return results


def run_watched(cmd, cwd: Path, env: dict, log_path: Path, record: Path, stall: float, limit: float) -> bool:
    """Runs cmd (output appended to log_path) until it exits; kills it, and every process it
    started, once `record` has not grown for `stall` seconds (pytest-timeout cannot fire while
    the main thread holds the GIL in a hang) or after `limit`. False if it had to be killed."""
    marker = f"{time.monotonic_ns()}-{os.getpid()}"
    with log_path.open("a") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=dict(env, PERVADE_COMPAT_RUN=marker), stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    started = last_progress = time.monotonic()
    size = -1
    while True:
        try:
            proc.wait(timeout=2)
            left = kill_marked(marker)
            if left:
                log(f"[compat] {left} processes outlived the pytest run {log_path.name}: killed")
            return True
        except subprocess.TimeoutExpired:
            pass
        now_size = record.stat().st_size if record.exists() else 0
        if now_size != size:
            size, last_progress = now_size, time.monotonic()
        if time.monotonic() - last_progress > stall or time.monotonic() - started > limit:
            break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    kill_marked(marker)  # pools and workers run in sessions of their own
    return False


def kill_marked(marker: str) -> int:
    """SIGKILLs every process whose environment has PERVADE_COMPAT_RUN=marker; how many."""
    needle = f"PERVADE_COMPAT_RUN={marker}".encode()
    killed = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    os.kill(int(entry), signal.SIGKILL)
                    killed += 1
        except OSError:
            continue
    return killed


def save_results(path: Path, folders, results: dict, parsl_version) -> None:
    """Writes the outcomes of `folders` into path, keeping those of other folders from earlier
    runs (a run of some folders does not lose the rest)."""
    kept = json.loads(path.read_text())["results"] if path.exists() else {}
    kept = {k: v for k, v in kept.items() if place_of(k) not in folders}
    kept.update({k: list(v) for k, v in results.items()})
    path.write_text(json.dumps({"parsl": parsl_version, "date": time.strftime("%Y-%m-%d"),
                                "results": dict(sorted(kept.items()))}, indent=1))


def place_of(nodeid: str) -> str:
    """The --folders entry a test id belongs to: its folder, or its file for a file directly in
    parsl/tests ("test_summary.py::test_summary" -> "test_summary.py")."""
    return nodeid.split("/", 1)[0].split("::", 1)[0]


def summarize(results: dict) -> dict:
    counts = dict.fromkeys(OUTCOMES, 0)
    for outcome, _ in results.values():
        counts[outcome] += 1
    return counts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--folders", default=",".join(FOLDERS),
                        help="folders (or files) of parsl/tests; `top` stands for the files directly in it")
    parser.add_argument("--engines", default="pervade",
                        help="pervade, parsl (the same tests on Parsl itself: the baseline), or pervade,parsl")
    parser.add_argument("--venv", type=Path, default=HERE / ".venv")
    parser.add_argument("--test-timeout", type=float, default=120, help="seconds one test may take")
    parser.add_argument("--folder-timeout", type=float, default=1800, help="seconds one folder run may take")
    parser.add_argument("--pip-timeout", type=float, default=1800)
    options = parser.parse_args(argv)
    modes = options.modes.split(",")
    try:
        python, versions = ensure_peers(options.venv, PACKAGES, options.pip_timeout)
        link_pervade(python)
        tests = site_packages(python) / "parsl" / "tests"
        # `top`: Parsl's test files directly in parsl/tests, each run as a "folder" of its own.
        top = sorted(p.name for p in tests.glob("test_*.py"))
        folders = [f for entry in options.folders.split(",") for f in (top if entry == "top" else [entry])]
        missing = [f for f in folders if not (tests / f).exists()]
        if missing:
            raise BenchError(f"no {', '.join(missing)} in {tests} (Parsl {PARSL_VERSION})")
    except BenchError as e:
        log(f"[compat] {e}")
        return 1
    engines = options.engines.split(",")
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
                log(f"[compat] {engine:7} {mode:7} {folder:20} " + " ".join(f"{k} {c[k]:4}" for k in OUTCOMES)
                    + f"  ({time.monotonic() - started:.0f} s)")
            save_results(out_dir / f"{engine}-{mode}.json", folders, all_results, versions.get("parsl"))
    print(f"\nParsl {versions.get('parsl')} user-facing tests (compat/results/*.json has every outcome)\n")
    print(f"{'engine':8} {'mode':8} {'folder':22} " + " ".join(f"{k:>14}" for k in OUTCOMES))
    for engine, mode, folder, c in table:
        print(f"{engine:8} {mode:8} {folder:22} " + " ".join(f"{c[k]:14}" for k in OUTCOMES))
    for engine in engines:
        for mode in modes:
            total = {k: sum(c[k] for e, m, _, c in table if e == engine and m == mode) for k in OUTCOMES}
            print(f"{engine:8} {mode:8} {'all':22} " + " ".join(f"{total[k]:14}" for k in OUTCOMES))
    print_against_parsl(modes, out_dir)
    return 0


def print_against_parsl(modes, out_dir: Path) -> None:
    """The target's measure: of the tests that pass on Parsl, how many pass on pervade (from the
    results of this run or an earlier one)."""
    print("\ntests passing on Parsl that pass on pervade")
    for mode in modes:
        if not all((out_dir / f"{e}-{mode}.json").exists() for e in ("parsl", "pervade")):
            print(f"{mode:8} (no results for both: make compat COMPAT_ARGS=--engines=pervade,parsl)")
            continue
        parsl = json.loads((out_dir / f"parsl-{mode}.json").read_text())["results"]
        pervade = json.loads((out_dir / f"pervade-{mode}.json").read_text())["results"]
        passing = [n for n, (o, _) in parsl.items() if o == "passed"]
        both = [n for n in passing if pervade.get(n, ["missing"])[0] == "passed"]
        but_teardown = [n for n in passing if pervade.get(n, ["missing"])[0] in ("passed", "teardown_error")]
        print(f"{mode:8} {len(both)} of {len(passing)} ({percent(len(both), len(passing))}); "
              f"{len(but_teardown)} ({percent(len(but_teardown), len(passing))}) counting teardown errors as passed")


def percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


if __name__ == "__main__":
    sys.exit(main())
