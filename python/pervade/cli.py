"""The `pervade` command (also `python -m pervade`):

    pervade run [--parsl-tests] script.py [args...]   an unmodified Parsl script on pervade
    pervade run [--parsl-tests] -m module [args...]   the same for a module (e.g. -m pytest)
    pervade perf [options]                            parsl-perf's workload (pervade perf --help)
    pervade dashboard [RUN_DIR|monitoring.db]         a web view of runs (pervade dashboard --help)
    pervade status RUN_DIR                            a summary of a run
    pervade top RUN_DIR                               the same, live
"""

from __future__ import annotations

import os
import runpy
import sys

USAGE = "usage:\n" + __doc__.split("\n\n", 1)[1].rstrip()
RUN_USAGE = """usage: pervade run [--parsl-tests] script.py [args...]
       pervade run [--parsl-tests] -m module [args...]

Runs the script (or module) as __main__ with every `parsl` import mapped to pervade, in this
process and in the workers it starts (docs/compat.md). --parsl-tests keeps parsl.tests as the
test files of the real Parsl installed beside pervade (how `make compat` runs Parsl's tests).
"""


def run(argv) -> int:
    from . import parsl_imports

    parsl_tests = None
    if argv[:1] == ["--parsl-tests"]:
        argv = argv[1:]
        parsl_tests = parsl_imports.real_parsl_dir()
        if parsl_tests is None:
            print("pervade run: --parsl-tests needs a real Parsl installed beside pervade", file=sys.stderr)
            return 2
    if argv[:1] in (["-h"], ["--help"]):
        print(RUN_USAGE)
        return 0
    if not argv or argv == ["-m"]:
        print(RUN_USAGE, file=sys.stderr)
        return 2
    parsl_imports.install(parsl_tests)
    try:
        if argv[0] == "-m":
            module = argv[1]
            if (module == "parsl" or module.startswith("parsl.")) and not (
                    parsl_tests and (module + ".").startswith("parsl.tests.")):
                # -m parsl.benchmark.perf: runpy needs the code of the module, which the alias of an
                # imported module does not give; run pervade's module of that name instead.
                module = "pervade" + module[len("parsl"):]
            sys.argv = [module] + argv[2:]    # runpy puts the module's file in sys.argv[0]
            sys.path.insert(0, os.getcwd())   # as `python -m` does
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        else:
            script = argv[0]
            if not os.path.exists(script):
                print(f"pervade run: {script}: no such file", file=sys.stderr)
                return 2
            sys.argv = list(argv)
            sys.path.insert(0, os.path.dirname(os.path.abspath(script)))  # as `python script.py` does
            runpy.run_path(script, run_name="__main__")
    except SystemExit as e:
        return _exit_status(e.code)
    return 0


def _exit_status(code) -> int:
    """The status `python script.py` gives for sys.exit(code)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    if argv[0] == "run":
        return run(argv[1:])
    if argv[0] == "perf":
        from . import perf
        return perf.main(argv[1:])
    if argv[0] in ("dashboard", "status", "top"):
        from . import dashboard
        return dashboard.COMMANDS[argv[0]](argv[1:])
    print(f"pervade: unknown command {argv[0]!r}\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
