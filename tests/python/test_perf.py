"""pervade perf (python -m pervade.perf and the `pervade` console script)."""

import json
import os
import shutil
import subprocess
import sys

import pytest


def run(args, cwd, timeout=120):
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_throughput_with_iterate_list(tmp_path):
    proc = run([sys.executable, "-m", "pervade.perf", "--time", "0.5", "--iterate", "100,200", "--json"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["mode"] == "throughput"
    assert [it["tasks"] for it in result["iterations"]] == [100, 200]
    assert all(it["tasks_per_second"] > 0 for it in result["iterations"])
    assert result["tasks_per_second"] > 0


def test_throughput_with_checkpoint(tmp_path):
    proc = run([sys.executable, "-m", "pervade.perf", "--time", "0.5", "--iterate", "100,200", "--checkpoint",
                "task_exit", "--json"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["checkpoint"] == "task_exit"
    assert [it["tasks"] for it in result["iterations"]] == [100, 200]
    # Every task had its own key: all 300 results are in the run's checkpoint.
    import glob
    import sqlite3
    (db,) = glob.glob(str(tmp_path / "runinfo" / "*" / "checkpoint" / "tasks.db"))
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM memo").fetchone()[0] == 300


def test_chain_mode(tmp_path):
    proc = run([sys.executable, "-m", "pervade.perf", "--mode", "chain", "--tasks", "200", "--json"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["mode"] == "chain" and result["tasks"] == 200
    assert result["tasks_per_second"] > 0
    assert result["latency_us_per_task"] > 0


def test_console_script_roundtrip(tmp_path):
    exe = shutil.which("pervade")
    assert exe is not None, "the `pervade` console script is not installed"
    proc = run([exe, "perf", "--mode", "roundtrip", "--tasks", "50", "--json"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["mode"] == "roundtrip" and result["tasks"] == 50
    assert result["median_us"] > 0 and result["p99_us"] >= result["median_us"]


def test_human_readable_output(tmp_path):
    proc = run([sys.executable, "-m", "pervade.perf", "--time", "0.5", "--iterate", "20,50"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "==== Iteration 1 ====" in proc.stdout and "Will run 20 tasks" in proc.stdout
    assert "==== Iteration 2 ====" in proc.stdout and "Will run 50 tasks" in proc.stdout
    assert "Tasks per second:" in proc.stdout
    assert "Tests complete - leaving DFK block" in proc.stdout


def test_config_file(tmp_path):
    config = tmp_path / "perf_config.py"
    config.write_text(
        "import pervade as parsl\n"
        "config = parsl.Config(executors=[parsl.ThreadPoolExecutor(max_threads=3, label='cfg')],\n"
        f"                      run_dir={str(tmp_path / 'cfg_runinfo')!r})\n")
    proc = run([sys.executable, "-m", "pervade.perf", "--config", str(config), "--mode", "chain", "--tasks", "20",
                "--json"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["tasks"] == 20
    assert (tmp_path / "cfg_runinfo" / "000").is_dir()


@pytest.mark.parametrize("bad", ["abc", "10,x", "0", "5,-1", ""])
def test_bad_iterate_value(tmp_path, bad):
    proc = run([sys.executable, "-m", "pervade.perf", "--iterate", bad, "--json"], tmp_path)
    assert proc.returncode != 0
    assert "Invalid iteration mode" in proc.stderr
    assert proc.stdout == ""


def test_unknown_command(tmp_path):
    proc = run([sys.executable, "-m", "pervade", "frobnicate"], tmp_path)
    assert proc.returncode != 0
    assert "unknown command" in proc.stderr


def test_version(tmp_path):
    proc = run([sys.executable, "-m", "pervade.perf", "--version"], tmp_path)
    assert proc.returncode == 0
    assert "pervade perf from pervade" in proc.stdout
