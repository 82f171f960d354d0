"""Runs the code cells of one Jupyter notebook in order, in one namespace, as Jupyter would, and
prints one JSON line per cell: {"cell": i, "outcome": "ok"|"error"|"skipped", "output": ...}.

    python tutorial_cells.py NOTEBOOK.ipynb SKIP,SKIP,...     (on Parsl)
    pervade run tutorial_cells.py NOTEBOOK.ipynb SKIP,...     (on pervade: `import parsl` gets pervade)

A cell that raises is reported with its exception and the next cells still run. Standard output of
each cell (Python's writes through sys.stdout) is captured. The tutorial predates two removals from
Parsl's API, which every cell gets updated for, on both engines: channels (`parsl.channels`,
`channel=LocalChannel()`) and HighThroughputExecutor's `max_workers` (now `max_workers_per_node`).
"""

import contextlib
import io
import json
import re
import sys
import traceback


def updated(source: str) -> str:
    """The cell with the two removed parts of Parsl's API replaced by what Parsl has now."""
    source = re.sub(r"^\s*from parsl\.channels import LocalChannel\s*$", "", source, flags=re.M)
    source = re.sub(r"channel\s*=\s*LocalChannel\(\)\s*,?", "", source)
    return re.sub(r"\bmax_workers\s*=", "max_workers_per_node=", source)


def main() -> int:
    notebook, skip = sys.argv[1], {int(i) for i in sys.argv[2].split(",") if i}
    cells = [c for c in json.load(open(notebook))["cells"] if c["cell_type"] == "code"]
    # The cells' names live in __main__, as in a notebook's kernel: functions defined there are
    # pickled by value for workers (Parsl's serializers and pervade's do that only for __main__).
    namespace = vars(sys.modules["__main__"])
    report = sys.stdout
    for i, cell in enumerate(cells):
        if i in skip:
            print(json.dumps({"cell": i, "outcome": "skipped", "output": ""}), file=report, flush=True)
            continue
        out = io.StringIO()
        outcome = "ok"
        with contextlib.redirect_stdout(out):
            try:
                exec(compile(updated("".join(cell["source"])), f"<cell {i}>", "exec"), namespace)
            except BaseException as e:  # noqa: BLE001 - every cell's failure is reported, the next ones run
                outcome = "error"
                out.write(f"{type(e).__name__}: {e}\n")
                traceback.print_exc(file=sys.stderr)
        print(json.dumps({"cell": i, "outcome": outcome, "output": out.getvalue()}), file=report, flush=True)
    with contextlib.suppress(Exception):  # as leaving the notebook's kernel would
        sys.modules["parsl"].clear()
    return 0


if __name__ == "__main__":
    sys.exit(main())
