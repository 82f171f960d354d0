"""Shared by the peer comparisons (compare_threads.py, compare_htex.py): running a subprocess in
its own process group, and the peers' virtual environment, benchmarks/.venv-peers.

The peers (Parsl, Dask, Ray) come from PyPI with pip into that venv, created with
`python3 -m venv` on first use and reused while their imports work there; only what is
missing is installed. pervade itself is never installed here: it is whatever the interpreter
running the benchmark imports (`make python`).
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_VENV = HERE / ".venv-peers"


class BenchError(Exception):
    """A failure with a message meant for the person running the benchmark."""


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def tail(text: str, lines: int = 25) -> str:
    return "\n".join("    " + line for line in text.strip().splitlines()[-lines:])


def run(cmd, *, timeout: float, cwd=None, env=None, stream_prefix: str | None = None) -> tuple[int, str]:
    """Runs cmd in its own process group; returns (exit code, combined output). Kills the group
    on timeout. With stream_prefix, echoes each output line to stderr as it arrives."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            bufsize=1, start_new_session=True)
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        if stream_prefix is None:
            out, _ = proc.communicate(timeout=timeout)
            return proc.returncode, out
        import selectors
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise subprocess.TimeoutExpired(cmd, timeout)
            if not sel.select(timeout=min(remaining, 1.0)):
                continue
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            log(stream_prefix + line.rstrip("\n"))
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        return proc.returncode, "".join(lines)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        raise BenchError(f"timed out after {timeout:.0f}s: {shlex.join(map(str, cmd))}") from None


# ---------------------------------------------------------------------------------------------
# The peers' virtual environment.

NETWORK_HINTS = ("Failed to establish a new connection", "Temporary failure in name resolution",
                 "Network is unreachable", "Name or service not known", "Could not fetch URL",
                 "No matching distribution found", "Max retries exceeded", "Connection refused",
                 "Read timed out", "ConnectTimeoutError")

# Prints {module: version or null} for the modules named in argv: one interpreter start for all.
_PROBE = r'''
import importlib, json, sys
found = {}
for name in sys.argv[1:]:
    try:
        module = importlib.import_module(name)
        found[name] = str(getattr(module, "__version__", None) or getattr(module, "VERSION", "?"))
    except Exception:
        found[name] = None
sys.stdout.write(json.dumps(found))
'''


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def versions_in(python: Path, modules, timeout: float) -> dict:
    """{module: version, or None when it does not import} in that interpreter."""
    modules = list(modules)
    if not python.exists():
        return dict.fromkeys(modules)
    try:
        code, out = run([str(python), "-c", _PROBE, *modules], timeout=min(timeout, 300))
        if code == 0:
            return json.loads(out.strip().splitlines()[-1])
    except (BenchError, ValueError, IndexError):
        pass
    return dict.fromkeys(modules)


def ensure_peers(venv: Path, packages: dict, timeout: float) -> tuple[Path, dict]:
    """Makes every module of `packages` ({import name: pip requirement}) importable in the venv,
    installing only the requirements whose modules are missing. Returns (venv python, versions)."""
    python = venv_python(venv)
    versions = versions_in(python, packages, timeout)
    missing = [m for m, v in versions.items() if not v]
    found = ", ".join(f"{m} {v}" for m, v in versions.items() if v)
    if not missing:
        log(f"[peers] reusing {venv} ({found})")
        return python, versions
    if not python.exists():
        log(f"[peers] creating virtual environment {venv} with `python3 -m venv`")
        code, out = run([sys.executable, "-m", "venv", str(venv)], timeout=timeout)
        if code != 0 or not python.exists():
            raise BenchError(f"could not create the virtual environment {venv} (exit {code}):\n{out.strip()}\n"
                             "On Debian/Ubuntu the venv module may need `apt-get install python3-venv`.")
    elif found:
        log(f"[peers] {venv} has {found}")
    requirements = list(dict.fromkeys(packages[m] for m in missing))  # de-duplicated, in order
    names = ", ".join(requirements)
    log(f"[peers] installing {names} from PyPI into the venv (pip output follows; this can take a few minutes)")
    started = time.monotonic()
    code, out = run([str(python), "-m", "pip", "install", "--progress-bar", "off", *requirements], timeout=timeout,
                    stream_prefix="[pip] ")
    if code != 0:
        hint = ""
        if any(h in out for h in NETWORK_HINTS):
            hint = (f"\nIt looks like PyPI could not be reached (no network?), or it has no {names} for this "
                    f"Python ({platform.python_version()}). Peers are downloaded once; the venv is reused "
                    "afterwards.")
        raise BenchError(f"`pip install {' '.join(requirements)}` into {venv} failed (exit {code}).{hint}\n"
                         f"Last pip output:\n{tail(out)}")
    versions = versions_in(python, packages, timeout)
    broken = [m for m, v in versions.items() if not v]
    if broken:
        raise BenchError(f"{names} installed into {venv} but `import {', '.join(broken)}` fails there")
    log(f"[peers] {', '.join(f'{m} {versions[m]}' for m in missing)} installed in {time.monotonic() - started:.0f}s")
    return python, versions


def cpu_model() -> str:
    """The CPU's model name, for the benchmark reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def fmt_number(value) -> str:
    """A figure for the tables: thousands separated above 1000, 1 decimal above 10, else 2."""
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"
