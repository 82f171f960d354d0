"""Parsl's tutorial notebooks (github.com/Parsl/parsl-tutorial) on Parsl and on pervade: every code
cell that needs no internet, Globus, batch system or plotting library runs, in order, with
`import parsl` kept, once on Parsl (the compat venv) and once under `pervade run`; their outcomes
and outputs are compared (docs/compat.md, "Parsl's tutorial").

    python compat/tutorial.py --tutorial DIR [--venv compat/.venv]

DIR is a checkout of the tutorial (the notebooks, app/, input/, output/). Each engine runs in a
fresh copy of it under compat/work/tutorial/<engine>/ (that directory and object addresses are
masked in the outputs). Cells whose output is random (random numbers, process ids, times,
versions) are compared with every number masked; a cell that fails is compared by the type of
its exception (pervade's messages may say more). Writes compat/results/tutorial.json and prints a
table; exits 1 if a cell differs other than the known differences (KNOWN_DIFFERENCES).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import PACKAGES, BenchError, ensure_peers, kill_marked, link_pervade, log  # noqa: E402

# notebook -> {code cell index: why it is not run}
EXCLUDED = {
    "1-parsl-introduction.ipynb": {11: "internet (a File on raw.githubusercontent.com)"},
    "2-parsl-advanced-features.ipynb": {8: "Globus", 9: "Globus", 17: "plotly (plotting)", 18: "plotly (plotting)"},
    "3-parsl-workflows.ipynb": {6: "Slurm on Frontera", 7: "MPI with a site config (config.midway)"},
}
# Cells whose output holds random numbers, process ids, times or versions: numbers are masked.
RANDOM = {
    "1-parsl-introduction.ipynb": {0, 12, 13, 14, 16, 20},
    "2-parsl-advanced-features.ipynb": {2, 3, 4, 11, 13, 14, 15, 16},
    "3-parsl-workflows.ipynb": {0, 1, 2, 3},
}
# Cells that differ on purpose (docs/compat.md, "Parsl's tutorial"): not counted as failures.
KNOWN_DIFFERENCES = {
    "2-parsl-advanced-features.ipynb": {6: "pervade keeps Config(checkpoint_mode=), which Parsl removed",
                                        7: "pervade keeps Config(checkpoint_files=), which Parsl removed"},
}
CELL_TIMEOUT = 900  # seconds for a whole notebook


def run_notebook(python: Path, tutorial: Path, notebook: str, engine: str) -> dict:
    work = HERE / "work" / "tutorial" / engine / notebook.removesuffix(".ipynb")
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(tutorial, work, ignore=shutil.ignore_patterns(".git"))
    skip = ",".join(str(i) for i in EXCLUDED.get(notebook, {}))
    runner = str(HERE / "tutorial_cells.py")
    cmd = [str(python), "-m", "pervade", "run", runner] if engine == "pervade" else [str(python), runner]
    # Parsl's interchange.py must be on PATH. The marker finds every process the notebook started.
    marker = f"tutorial-{time.monotonic_ns()}-{os.getpid()}"
    env = dict(os.environ, PATH=f"{python.parent}{os.pathsep}{os.environ.get('PATH', '')}",
               PERVADE_COMPAT_RUN=marker)
    # Output to files, in a process group of its own: a notebook that leaves processes behind
    # (parsl.clear() stops none of Parsl's: interchange, blocks, their workers) neither holds our
    # pipes open nor outlives the run.
    with open(work / "stdout.txt", "w") as out, open(work / "stderr.txt", "w") as err:
        proc = subprocess.Popen([*cmd, notebook, skip], cwd=work, env=env, stdout=out, stderr=err,
                                start_new_session=True)
        try:
            proc.wait(timeout=CELL_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        timed_out = proc.wait() == -signal.SIGKILL
        left = kill_marked(marker)  # blocks run in sessions of their own
        if left:
            log(f"[tutorial] {notebook} on {engine}: {left} processes left behind, killed")
    if timed_out:
        return {"error": f"timed out after {CELL_TIMEOUT} s"}
    cells = {}
    for line in (work / "stdout.txt").read_text().splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            r["output"] = re.sub(r"0x[0-9a-f]+", "0x?", r["output"].replace(str(work), "<work>"))
            cells[r["cell"]] = r
    if proc.returncode != 0:
        return {"cells": cells, "error": f"exit {proc.returncode}: {(work / 'stderr.txt').read_text().strip()[-500:]}"}
    return {"cells": cells}


def masked(text: str) -> str:
    return re.sub(r"\d+(\.\d+)?", "N", text)


def error_type(output: str) -> str:
    """The exception's type name, from the last line of a failed cell's output."""
    lines = output.strip().splitlines()
    return lines[-1].split(":", 1)[0] if lines else ""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tutorial", type=Path, required=True, help="a checkout of Parsl/parsl-tutorial")
    parser.add_argument("--venv", type=Path, default=HERE / ".venv")
    parser.add_argument("--pip-timeout", type=float, default=1800)
    options = parser.parse_args(argv)
    try:
        python, _ = ensure_peers(options.venv, PACKAGES, options.pip_timeout)
        link_pervade(python)
    except BenchError as e:
        log(f"[tutorial] {e}")
        return 1
    report, differ = {}, 0
    print(f"{'notebook':34} {'cell':>4}  {'parsl':8} {'pervade':8} same output")
    for notebook in EXCLUDED:
        runs = {engine: run_notebook(python, options.tutorial.resolve(), notebook, engine)
                for engine in ("parsl", "pervade")}
        for engine, r in runs.items():
            if "error" in r:
                log(f"[tutorial] {notebook} on {engine}: {r['error']}")
        count = max((len(r.get("cells", {})) for r in runs.values()), default=0)
        for i in range(count):
            a, b = (runs[e].get("cells", {}).get(i, {"outcome": "missing", "output": ""}) for e in ("parsl", "pervade"))
            if a["outcome"] == "error":
                norm = error_type
            else:
                norm = masked if i in RANDOM[notebook] else str
            same = a["outcome"] == b["outcome"] and norm(a["output"]) == norm(b["output"])
            known = KNOWN_DIFFERENCES.get(notebook, {}).get(i, "")
            differ += not same and not known
            why = EXCLUDED[notebook].get(i, "") or (known if not same else "")
            print(f"{notebook:34} {i:4}  {a['outcome']:8} {b['outcome']:8} {'yes' if same else 'NO'}  {why}")
            report.setdefault(notebook, {})[i] = {"parsl": a, "pervade": b, "same": same, "excluded": why}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "tutorial.json").write_text(json.dumps(report, indent=1))
    print(f"\n{differ} cells differ, not counting the known differences (compat/results/tutorial.json has "
          "both outputs of every cell)")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
