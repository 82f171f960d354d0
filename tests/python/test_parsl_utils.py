"""Parsl's helper modules as Parsl scripts use them: pervade.utils (execute_wait, the DNS-name
sanitizers), the "initialize once" log configurations (pervade.logconfigs.base), the providers'
errors (pervade.providers.errors) and the "parsl" logger under `pervade run`."""

import os
import pickle
import re
import subprocess
import sys
import textwrap

import pytest

from pervade import parsl_imports
from pervade.errors import ParslError
from pervade.logconfigs import base
from pervade.providers import SlurmProvider
from pervade.providers.errors import ExecutionProviderException, SubmitException
from pervade.utils import execute_wait, sanitize_dns_label_rfc1123, sanitize_dns_subdomain_rfc1123

from conftest import pid_alive, wait_until

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


# --- execute_wait ----------------------------------------------------------------------------

def test_execute_wait_returns_exit_code_and_both_streams():
    assert execute_wait("echo out; echo err >&2; exit 3", 30) == (3, "out\n", "err\n")


def test_execute_wait_reads_output_larger_than_a_pipe():
    rc, out, _ = execute_wait("head -c 300000 /dev/zero | tr '\\0' x", 60)
    assert rc == 0 and out == "x" * 300000


def test_execute_wait_kills_the_whole_command_at_its_walltime(tmp_path):
    pid_file = tmp_path / "pid"
    # A background child keeps the pipes open: only killing the group ends the wait.
    with pytest.raises(subprocess.TimeoutExpired):
        execute_wait(f"sleep 600 & echo $! > {pid_file}; wait", 1)
    pid = int(pid_file.read_text())
    assert wait_until(lambda: not pid_alive(pid), timeout=30), f"the command's child {pid} still runs"


# --- DNS names -------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, expected", [
    ("My_Job.1", "my-job-1"),
    ("--a--b--", "a-b"),
    ("a" * 70, "a" * 63),
    ("a" * 62 + "-b", "a" * 62),      # cut at 63 leaves a hyphen at the end: stripped
])
def test_sanitize_dns_label(raw, expected):
    label = sanitize_dns_label_rfc1123(raw)
    assert label == expected and DNS_LABEL.match(label)


@pytest.mark.parametrize("raw", ["", "-", "$$$"])
def test_sanitize_dns_label_of_nothing_valid_raises(raw):
    with pytest.raises(ValueError, match=re.escape(f"Sanitized DNS label is empty for input '{raw}'")):
        sanitize_dns_label_rfc1123(raw)


def test_sanitize_dns_subdomain():
    assert sanitize_dns_subdomain_rfc1123("..Team.A_B..") == "team.a-b"
    long = sanitize_dns_subdomain_rfc1123(".".join(["a" * 63] * 5))
    assert len(long) <= 253 and not long.endswith((".", "-"))
    with pytest.raises(ValueError, match=re.escape("Sanitized DNS subdomain is empty for input '...'")):
        sanitize_dns_subdomain_rfc1123("...")


# --- LogConfig: initialized once per process -------------------------------------------------

class CountingConfig(base.LogConfig):
    def __init__(self):
        super().__init__()
        self.initialized = 0

    def initialize_logging(self, *, log_dir, log_name):
        self.initialized += 1
        return lambda: None


undone = []


class Recording(base.LogConfig):
    def initialize_logging(self, *, log_dir, log_name):
        return lambda: undone.append(log_name)


def test_log_config_is_initialized_once_and_undone_by_its_last_user(tmp_path):
    undone.clear()
    config = Recording()
    base.oneshot_initialize_logging(log_config=config, log_dir=tmp_path, log_name="first")
    # A pickled copy (as another component would get it) is the same configuration.
    copy = pickle.loads(pickle.dumps(config))
    base.oneshot_initialize_logging(log_config=copy, log_dir=tmp_path, log_name="second")
    assert base._initialized_log_contexts[config.uuid].count == 2
    base.oneshot_uninitialize_logging(log_config=copy)
    assert undone == [] and config.uuid in base._initialized_log_contexts
    base.oneshot_uninitialize_logging(log_config=config)
    assert undone == ["first"] and config.uuid not in base._initialized_log_contexts
    with pytest.raises(RuntimeError, match="not initialized"):
        base.oneshot_uninitialize_logging(log_config=config)


def test_log_config_can_be_initialized_again_after_release(tmp_path):
    config = CountingConfig()
    for _ in range(2):
        base.oneshot_initialize_logging(log_config=config, log_dir=tmp_path, log_name="x")
        base.oneshot_uninitialize_logging(log_config=config)
    assert config.initialized == 2 and config.uuid not in base._initialized_log_contexts


# --- providers' errors -----------------------------------------------------------------------

def test_submit_exception_keeps_parsl_names_and_warns_on_task_name():
    e = SubmitException("block-0", "no", retcode=1)
    assert isinstance(e, ExecutionProviderException) and isinstance(e, ParslError)
    assert e.job_name == "block-0" and str(e) == "Cannot launch job block-0: no (retcode=1)"
    with pytest.deprecated_call():
        assert e.task_name == "block-0"


def test_failed_submission_raises_submit_exception(tmp_path, monkeypatch):
    # A real sbatch that refuses the job, as a scheduler does for a bad partition.
    sbatch = tmp_path / "bin" / "sbatch"
    sbatch.parent.mkdir()
    sbatch.write_text("#!/bin/sh\necho 'sbatch: error: invalid partition specified: nope' >&2\nexit 1\n")
    sbatch.chmod(0o755)
    monkeypatch.setenv("PATH", f"{sbatch.parent}:{os.environ['PATH']}")
    provider = SlurmProvider(partition="nope")
    provider.script_dir = str(tmp_path / "scripts")
    with pytest.raises(SubmitException, match="invalid partition specified: nope") as info:
        provider.submit("true", 1, "block-0")
    assert info.value.job_name == "block-0"


# --- the "parsl" logger under pervade run ----------------------------------------------------

def test_parsl_logger_is_pervades_under_pervade_run(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent("""
        import io, logging
        import parsl
        assert logging.getLogger("parsl") is logging.getLogger("pervade")
        stream = io.StringIO()
        remove = parsl.set_stream_logger(stream=stream)
        logging.getLogger("parsl").info("AAA")
        logging.getLogger("parsl.mine").info("BBB")
        remove()
        logging.getLogger("parsl").info("CCC")
        print(sorted(w for w in ("AAA", "BBB", "CCC") if w in stream.getvalue()))
    """))
    env = {k: v for k, v in os.environ.items() if k not in (parsl_imports.ENV_ENABLED, parsl_imports.ENV_TESTS)}
    r = subprocess.run([sys.executable, "-m", "pervade", "run", str(script)], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "['AAA', 'BBB']"


# --- provider.execute_wait -------------------------------------------------------------------

def fake_commands(tmp_path, monkeypatch, **scripts):
    """Real executables on PATH standing in for a scheduler's client commands."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, body in scripts.items():
        (bin_dir / name).write_text("#!/bin/sh\n" + body + "\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")


class RecordingSlurm(SlurmProvider):
    """Runs the scheduler's commands through execute_wait, as a Parsl subclass would (to run
    them over ssh, say); here it records them and runs them."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.commands = []

    def execute_wait(self, cmd, timeout=None):
        self.commands.append(cmd)
        return super().execute_wait(cmd, timeout)


def test_overridden_execute_wait_runs_every_scheduler_command(tmp_path, monkeypatch):
    fake_commands(tmp_path, monkeypatch, sbatch='echo "Submitted batch job 42"', sacct="exit 1",
                  squeue='echo "42 PD"', scancel="exit 0")
    provider = RecordingSlurm(partition="debug")
    provider.script_dir = str(tmp_path / "scripts")
    assert provider.submit("true", 1, "block-0") == "42"
    job = provider.resources["42"]
    assert provider.commands == [f"sbatch {job['script_path']}"]
    assert "#SBATCH --partition=debug" in open(job["script_path"]).read()
    assert job["job_stdout_path"].endswith(".stdout") and job["job_stderr_path"].endswith(".stderr")
    status = provider.status(["42"])[0]
    assert (status.stdout_path, status.stderr_path) == (job["job_stdout_path"], job["job_stderr_path"])
    assert provider.cancel(["42"]) == [True]
    assert provider.commands[-1] == "scancel 42"
    assert provider.resources["42"]["status"].state.name == "CANCELLED"


def test_execute_wait_set_on_the_provider_is_used(tmp_path):
    # Parsl's own tests replace execute_wait on the instance with a mock.
    from unittest import mock
    from pervade.providers import PBSProProvider
    provider = PBSProProvider(queue="debug")
    provider.script_dir = tmp_path  # a path-like, as Parsl takes
    provider.execute_wait = mock.Mock(return_value=(0, "1234.pbs01\n", ""))
    assert provider.submit("true", tasks_per_node=1) == "1234.pbs01"
    (cmd, timeout), _ = provider.execute_wait.call_args
    assert cmd.startswith("qsub ") and timeout == provider.cmd_timeout


def test_execute_wait_with_a_bad_answer_fails_the_submission(tmp_path):
    provider = SlurmProvider()
    provider.script_dir = str(tmp_path)
    provider.execute_wait = lambda cmd, timeout=None: "Submitted batch job 7"
    with pytest.raises(SubmitException, match=r"must return \(exit code, stdout, stderr\)"):
        provider.submit("true", 1)
    provider.execute_wait = lambda cmd, timeout=None: None
    with pytest.raises(SubmitException, match=r"returned None, not \(exit code, stdout, stderr\)"):
        provider.submit("true", 1)


def test_job_status_without_a_message_has_none():
    from pervade.providers import JobState, JobStatus, LocalProvider
    assert JobStatus(JobState.PENDING).message is None
    provider = LocalProvider(cancel_grace=1)
    job = provider.submit("sleep 600", 1)
    try:
        status = provider.status([job])[0]
        assert status.state == JobState.RUNNING and status.message is None, status
    finally:
        assert provider.cancel([job]) == [True]


def test_job_status_reads_the_jobs_output(tmp_path):
    from pervade.providers import JobState, JobStatus
    log = tmp_path / "block-0.log"
    log.write_text("started\n" + "x" * 5000 + "\nlast words\n")
    status = JobStatus(JobState.FAILED, "exit code 3", 3, str(log))
    assert status.stdout_path == status.stderr_path == str(log)
    assert status.stdout == log.read_text()
    summary = status.stderr_summary
    assert summary.startswith("started\n") and summary.endswith("last words\n") and "\n...\n" in summary
    assert len(summary) <= JobStatus.SUMMARY_TRUNCATION_THRESHOLD + 5
    assert JobStatus(JobState.FAILED, stdout_path=str(tmp_path / "missing")).stdout is None
    assert JobStatus(JobState.PENDING).stdout_summary is None
