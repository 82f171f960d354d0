"""`pervade run`: unmodified Parsl scripts (`import parsl`) run on pervade, in the driver and in
the HighThroughputExecutor's workers, without touching a real Parsl installed beside it."""

import os
import subprocess
import sys
import textwrap

import pytest

import pervade
from pervade import parsl_imports

from conftest import own_processes, wait_until


def run(args, cwd, env_extra=None, timeout=120):
    env = dict(os.environ)
    env.pop(parsl_imports.ENV_ENABLED, None)
    env.pop(parsl_imports.ENV_TESTS, None)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "pervade", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


THREADS_SCRIPT = """
    import sys
    import parsl
    from parsl.app.app import python_app, bash_app
    from parsl.configs.local_threads import config
    from parsl.dataflow.errors import DependencyError

    @python_app
    def double(x):
        return 2 * x

    @python_app
    def fail():
        raise ValueError("boom")

    @python_app
    def after(x):
        return x

    with parsl.load(config):
        print("result", double(double(10)).result())
        try:
            after(fail()).result()
        except DependencyError:
            print("dependency error")
    print("argv", sys.argv[1:])
    print("same", parsl.load is __import__("pervade").load, parsl.__name__)
    sys.exit(3)
"""


def test_run_script_imports_parsl_as_pervade(tmp_path):
    script = write(tmp_path / "flow.py", THREADS_SCRIPT)
    r = run(["run", str(script), "a", "--b"], cwd=tmp_path)
    assert r.returncode == 3, r.stderr
    assert "result 40" in r.stdout
    assert "dependency error" in r.stdout
    assert "argv ['a', '--b']" in r.stdout
    assert "same True pervade" in r.stdout


def test_run_module(tmp_path):
    write(tmp_path / "flowmod.py", THREADS_SCRIPT)
    r = run(["run", "-m", "flowmod", "x"], cwd=tmp_path)
    assert r.returncode == 3, r.stderr
    assert "result 40" in r.stdout and "argv ['x']" in r.stdout


def test_run_without_script_is_usage_error(tmp_path):
    r = run(["run"], cwd=tmp_path)
    assert r.returncode == 2 and "usage: pervade run" in r.stderr
    r = run(["run", str(tmp_path / "missing.py")], cwd=tmp_path)
    assert r.returncode == 2 and "no such file" in r.stderr


def test_workers_import_parsl_as_pervade(tmp_path):
    """The app lives in a module of its own that says `import parsl`: the worker process imports
    that module to run it, so the mapping must be on there too."""
    write(tmp_path / "tasks.py", """
        import os
        import parsl
        from parsl.app.app import python_app

        @python_app
        def where(x):
            import parsl
            return parsl.__name__, os.getpid(), x + 1
    """)
    script = write(tmp_path / "flow.py", f"""
        import os
        import parsl
        from parsl.config import Config
        from parsl.executors import HighThroughputExecutor
        from parsl.providers import LocalProvider
        from tasks import where

        config = Config(executors=[HighThroughputExecutor(max_workers_per_node=1, encrypted=False,
                                                          provider=LocalProvider(init_blocks=1, max_blocks=1))],
                        run_dir={str(tmp_path / "runinfo")!r})
        with parsl.load(config):
            name, pid, value = where(41).result(timeout=60)
        print("worker", name, pid != os.getpid(), value)
    """)
    r = run(["run", str(script)], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "worker pervade True 42" in r.stdout
    assert wait_until(lambda: not own_processes(b"pervade-pool", b"pervade.worker"), 30)


def test_missing_parsl_name_is_an_import_error(tmp_path):
    script = write(tmp_path / "flow.py", """
        try:
            import parsl.executors.workqueue.executor
        except ModuleNotFoundError as e:
            print("module:", e.name, "|", e)
        try:
            from parsl import NoSuchThing
        except ImportError as e:
            print("name:", e)
    """)
    r = run(["run", str(script)], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "module: parsl.executors.workqueue" in r.stdout
    assert "pervade has no 'pervade.executors.workqueue'" in r.stdout
    assert "name: cannot import name 'NoSuchThing'" in r.stdout


@pytest.fixture
def real_parsl(tmp_path):
    """A stand-in for a real Parsl installation: a `parsl` package with a tests subpackage."""
    site = tmp_path / "site"
    write(site / "parsl" / "__init__.py", "REAL = True\n")
    write(site / "parsl" / "tests" / "__init__.py", "")
    write(site / "parsl" / "tests" / "helper.py", """
        import parsl
        from parsl.config import Config
        KIND = getattr(parsl, "REAL", False), parsl.__name__
    """)
    return site


def test_real_parsl_is_untouched_without_run(tmp_path, real_parsl):
    r = subprocess.run([sys.executable, "-c", "import pervade, parsl; print(parsl.REAL, parsl.__name__)"],
                       cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(real_parsl)}, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "parsl"]


def test_run_wins_over_real_parsl_and_keeps_its_tests(tmp_path, real_parsl):
    script = write(tmp_path / "flow.py", """
        import parsl
        print("parsl is", parsl.__name__)
        import parsl.tests.helper as h
        print("tests", h.__file__.endswith("parsl/tests/helper.py"), h.KIND)
    """)
    r = run(["run", str(script)], cwd=tmp_path, env_extra={"PYTHONPATH": str(real_parsl)})
    # Without --parsl-tests, parsl.tests is pervade's (the test configs Parsl's docs import only).
    assert r.returncode == 1 and "No module named 'parsl.tests.helper'" in r.stderr
    r = run(["run", "--parsl-tests", str(script)], cwd=tmp_path, env_extra={"PYTHONPATH": str(real_parsl)})
    assert r.returncode == 0, r.stderr
    assert "parsl is pervade" in r.stdout
    assert "tests True (False, 'pervade')" in r.stdout


def test_install_refuses_after_a_real_parsl_import(tmp_path, real_parsl):
    code = "import parsl; from pervade import parsl_imports; parsl_imports.install()"
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(real_parsl)},
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "parsl is already imported" in r.stderr


def test_module_spec_stays_pervades(tmp_path):
    script = write(tmp_path / "flow.py", """
        import parsl.dataflow.dflow as d
        import pervade.dataflow.dflow
        print(d is pervade.dataflow.dflow, d.__spec__.name, d.__name__)
    """)
    r = run(["run", str(script)], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "pervade.dataflow.dflow", "pervade.dataflow.dflow"]


def test_finder_is_off_in_this_process():
    assert parsl_imports.installed() is None
    assert pervade.__name__ == "pervade"
