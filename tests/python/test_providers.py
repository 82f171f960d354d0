"""Batch-scheduler providers and launchers from Python: each config class builds its engine
object, the job scripts it submits (through stand-in scheduler commands first on PATH), bad
parameters rejected, and a HighThroughputExecutor running tasks on blocks that a stand-in
Slurm starts as local processes."""

import os
import shutil
import stat
import subprocess
import textwrap

import pytest
from conftest import pid_alive, wait_until

import pervade as parsl
from pervade import launchers as pl
from pervade import providers as pp
from pervade.errors import ConfigurationError, ParslError
from pervade.providers import JobState

T = 60


def write_command(bin_dir, name, body):
    path = bin_dir / name
    path.write_text("#!/bin/bash\n" + textwrap.dedent(body))
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


@pytest.fixture
def fake_bin(tmp_path, monkeypatch):
    """A directory first on PATH for stand-in scheduler commands; calls are logged to calls.log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return bin_dir


def calls(fake_bin):
    log = fake_bin.parent / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


LOG = 'echo "$(basename "$0") $*" >> "$(dirname "$0")/../calls.log"\n'


# ---- every provider: native object, submitted script, status, cancel --------------------------

SCHEDULERS = {
    "slurm": (lambda: parsl.SlurmProvider(partition="debug", account="proj", walltime="01:00:00"),
              "sbatch", "Submitted batch job 4242", "sacct",
              "4242 RUNNING", ["scancel"], "4242", ["#SBATCH --partition=debug", "#SBATCH --account=proj",
                                                    "#SBATCH --time=01:00:00", "#SBATCH --exclusive"]),
    "pbspro": (lambda: parsl.PBSProProvider(queue="debug", cpus_per_node=8, select_options="ngpus=2"),
               "qsub", "1001.pbs01", "qstat",
               "Job id            Name             User              Time Use S Queue\n"
               "----------------  ---------------- ----------------  -------- - -----\n"
               "1001.pbs01        htex.block-0     alice             00:00:03 R workq",
               ["qdel"], "1001.pbs01", ["#PBS -l select=1:ncpus=8:ngpus=2", "#PBS -l walltime=00:20:00"]),
    "torque": (lambda: parsl.TorqueProvider(account="proj", launcher=parsl.SimpleLauncher()),
               "qsub", "4807.torque-server", "qstat",
               "Job ID                    Name             User            Time Use S Queue\n"
               "------------------------- ---------------- --------------- -------- - -----\n"
               "4807.torque-server         htex.block-0     user01          00:00:01 R batch",
               ["qdel"], "4807.torque-server", ["#PBS -l nodes=1:ppn=1", "#PBS -l walltime=00:20:00"]),
    "lsf": (lambda: parsl.LSFProvider(project="CSC1", queue="batch", walltime="00:30:00"),
            "bsub", "Job <12345> is submitted to queue <batch>.", "bjobs", "12345 RUN", ["bkill"], "12345",
            ["#BSUB -W 30", "#BSUB -P CSC1", "#BSUB -q batch", "#BSUB -nnodes 1"]),
    "grid_engine": (lambda: parsl.GridEngineProvider(queue="all.q", scheduler_options="#$ -pe smp 4"),
                    "qsub", "101", "qstat",
                    "job-ID  prior   name       user         state submit/start at     queue        slots\n"
                    "------------------------------------------------------------------------------------\n"
                    "    101 0.55500 htex.block user1        r     11/13/2019 12:10:54 all.q@node1  1",
                    ["qdel"], "101", ["#$ -l h_rt=00:10:00", "#$ -pe smp 4"]),
    "condor": (lambda: parsl.CondorProvider(cores_per_slot=2, mem_per_slot=1, environment={"A": "b"}),
               "condor_submit", "1 job(s) submitted to cluster 118907.", "condor_q", "118907.0 2",
               ["condor_rm"], "118907.0", ["request_cpus            = 2", "request_memory          = 1024",
                                           "queue"]),
}


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_submit_status_cancel_through_the_schedulers_commands(name, fake_bin, tmp_path):
    make, submit_cmd, submit_out, status_cmd, status_out, cancel_cmds, job_id, directives = SCHEDULERS[name]
    write_command(fake_bin, submit_cmd, LOG + f"""
        cp "${{@: -1}}" "{tmp_path}/submitted"
        echo '{submit_out}'
    """)
    write_command(fake_bin, status_cmd, LOG + f"cat <<'EOF'\n{status_out}\nEOF\n")
    for c in cancel_cmds:
        write_command(fake_bin, c, LOG)
    provider = make()
    provider.script_dir = str(tmp_path / "scripts")
    assert provider._native_provider() is not None
    assert provider._native_provider().label == provider.label

    preview = provider.job_script("pervade-pool --block-id 0", 1, "htex.block-0", str(tmp_path / "b.log"))
    for line in directives:
        assert line in preview.splitlines(), preview

    assert provider.submit("pervade-pool --block-id 0", 1, "htex.block-0", str(tmp_path / "b.log")) == job_id
    submitted = (tmp_path / "submitted").read_text()
    for line in directives:
        assert line in submitted.splitlines(), submitted
    assert calls(fake_bin)[-1].startswith(f"{submit_cmd} ")
    assert os.path.dirname(calls(fake_bin)[-1].split()[-1]) == str(tmp_path / "scripts")

    [status] = provider.status([job_id])
    assert status.state == JobState.RUNNING, status
    assert provider.status(["nope"])[0].state == JobState.MISSING
    assert provider.cancel([job_id]) == [True]
    assert calls(fake_bin)[-1].startswith(cancel_cmds[0]) or calls(fake_bin)[-2].startswith(cancel_cmds[0])
    assert provider.status([job_id])[0].state == JobState.CANCELLED


def test_a_refused_submit_raises_with_the_schedulers_message(fake_bin, tmp_path):
    write_command(fake_bin, "sbatch",
                  "echo 'sbatch: error: Batch job submission failed: Invalid partition name specified' >&2\nexit 1\n")
    provider = parsl.SlurmProvider(partition="nope")
    provider.script_dir = str(tmp_path / "scripts")
    with pytest.raises(ParslError, match="Invalid partition name specified"):
        provider.submit("true", 1, "b0", "")


def test_a_missing_scheduler_command_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing there
    provider = parsl.LSFProvider()
    provider.script_dir = str(tmp_path / "scripts")
    with pytest.raises(ParslError, match="'bsub' was not found on PATH"):
        provider.submit("true", 1, "b0", "")


def test_a_hanging_status_command_times_out(fake_bin, tmp_path):
    write_command(fake_bin, "qsub", "echo 7\n")
    write_command(fake_bin, "qstat", "exec sleep 300\n")
    provider = parsl.GridEngineProvider(cmd_timeout=1)
    provider.script_dir = str(tmp_path / "scripts")
    job = provider.submit("true", 1, "b0", "")
    with pytest.raises(ParslError, match="cmd_timeout"):
        provider.status([job])


# ---- parameters -------------------------------------------------------------------------------

def test_parsl_defaults():
    slurm = parsl.SlurmProvider()
    assert (slurm.walltime, slurm.cmd_timeout, slurm.exclusive, slurm.status_batch_size) == ("00:10:00", 10, True, 50)
    assert slurm.regex_job_id == r"Submitted batch job (?P<id>\S*)"
    assert isinstance(slurm.launcher, parsl.SingleNodeLauncher)
    assert (slurm.status_polling_interval, parsl.LocalProvider().status_polling_interval) == (60, 5)
    assert (parsl.PBSProProvider().walltime, parsl.PBSProProvider().cmd_timeout) == ("00:20:00", 120)
    assert isinstance(parsl.TorqueProvider().launcher, parsl.AprunLauncher)
    assert parsl.LSFProvider().cmd_timeout == 120
    assert parsl.GridEngineProvider().cmd_timeout == 60
    condor = parsl.CondorProvider(cores_per_slot=4, mem_per_slot=2.0)
    assert (condor.cores_per_node, condor.mem_per_node, condor.cmd_timeout) == (4, 2.0, 60)
    lsf = parsl.LSFProvider(cores_per_block=40, cores_per_node=16, request_by_nodes=False)
    assert lsf.nodes_per_block == 3
    assert "#BSUB -n 40" in lsf.job_script("x")


@pytest.mark.parametrize("make", [
    lambda: parsl.SlurmProvider(walltime="10"),
    lambda: parsl.SlurmProvider(walltime=600),
    lambda: parsl.SlurmProvider(partition=3),
    lambda: parsl.SlurmProvider(cores_per_node=0),
    lambda: parsl.SlurmProvider(mem_per_node=-4),
    lambda: parsl.SlurmProvider(exclusive="yes"),
    lambda: parsl.SlurmProvider(regex_job_id="(unclosed"),
    lambda: parsl.SlurmProvider(min_blocks=3, max_blocks=1),
    lambda: parsl.SlurmProvider(cmd_timeout=0),
    lambda: parsl.SlurmProvider(launcher="srun"),
    lambda: parsl.PBSProProvider(cpus_per_node=0),
    lambda: parsl.TorqueProvider(queue=["batch"]),
    lambda: parsl.LSFProvider(request_by_nodes=False),
    lambda: parsl.GridEngineProvider(nodes_per_block=0),
    lambda: parsl.CondorProvider(mem_per_slot=0),
    lambda: parsl.CondorProvider(environment={"A": 1}),
    lambda: parsl.CondorProvider(environment={"A B": "x"}),
    lambda: parsl.CondorProvider(transfer_input_files=[1]),
    lambda: parsl.WrappedLauncher(prepend=None),
    lambda: parsl.SrunLauncher(overrides=5),
    lambda: parsl.MpiExecLauncher(bind_cmd=None),
])
def test_bad_parameters_are_configuration_errors(make):
    with pytest.raises(ConfigurationError):
        make()


# ---- launchers ----------------------------------------------------------------------------------

def test_every_launcher_builds_its_native_object_and_wraps():
    expected = {
        parsl.SimpleLauncher(): "cmd",
        parsl.SingleNodeLauncher(): "WORKERCOUNT=4",
        parsl.WrappedLauncher(prepend="time"): "time cmd",
        parsl.SrunLauncher(overrides="--mpi=none"): "srun --ntasks 4 -l --mpi=none /bin/bash -c 'cmd'",
        parsl.SrunMPILauncher(): "srun --exclusive --nodes $NODES_PER_BLOCK -l /bin/bash -c 'cmd'",
        parsl.AprunLauncher(overrides="-cc depth"): "aprun -n 4 -N 2 -cc depth /bin/bash -c 'cmd'",
        parsl.JsrunLauncher(): "jsrun -n 4 -r 2 /bin/bash -c 'cmd'",
        parsl.MpiExecLauncher(): "mpiexec --bind-to none -n 4 --hostfile",
        parsl.MpiRunLauncher(overrides="--oversubscribe"): "mpirun -np 4 --oversubscribe '/bin/bash' -c 'cmd'",
        parsl.GnuParallelLauncher(): "--sshloginfile",
    }
    for launcher, text in expected.items():
        assert launcher._native_launcher().name == type(launcher).__name__
        assert text in launcher("cmd", 2, 2), (launcher, launcher("cmd", 2, 2))


def test_launchers_stay_importable_from_providers():
    assert pp.SimpleLauncher is pl.SimpleLauncher is parsl.SimpleLauncher
    assert pp.SingleNodeLauncher is pl.SingleNodeLauncher


def test_wrapped_and_single_node_scripts_run_under_bash(tmp_path):
    out = tmp_path / "out.txt"
    script = parsl.WrappedLauncher(prepend="env GREETING=hi")(f"printenv GREETING >> {out}", 1, 1)
    subprocess.run(["/bin/bash", "-c", script], check=True)
    script = parsl.SingleNodeLauncher()(f"echo copy $1 >> {out}", 3, 1)
    subprocess.run(["/bin/bash", "-c", script], check=True)
    assert sorted(out.read_text().splitlines()) == ["copy 1", "copy 2", "copy 3", "hi"]


@pytest.mark.skipif(shutil.which("parallel") is None,
                    reason="GNU parallel is not installed (apt-get install parallel): GnuParallelLauncher not run")
def test_gnu_parallel_launcher_runs_every_copy(tmp_path):
    out = tmp_path / "out.txt"
    script = parsl.GnuParallelLauncher()(f"echo copy $1 >> {out}", 2, 2)
    env = dict(os.environ, HOME=str(tmp_path), PERVADE_SCRIPT_DIR=str(tmp_path), JOBNAME="b0")
    subprocess.run(["/bin/bash", "-c", script], check=True, env=env, cwd=tmp_path)
    assert sorted(out.read_text().splitlines()) == ["copy 1", "copy 2", "copy 3", "copy 4"]


# ---- a HighThroughputExecutor on a stand-in Slurm -------------------------------------------

@pytest.fixture
def local_slurm(fake_bin, tmp_path):
    """sbatch runs the job script as a local process in a session of its own (output to the
    script's --output file); squeue says R while it runs, CD after; sacct is disabled;
    scancel sends SIGTERM to the job's session."""
    state = tmp_path / "slurm"
    state.mkdir()
    write_command(fake_bin, "sbatch", LOG + f"""
        S={state}
        N=$(( $(cat $S/next 2>/dev/null || echo 100) + 1 )); echo $N > $S/next
        OUT=$(sed -n 's/^#SBATCH --output=//p' "$1")
        setsid /bin/bash "$1" >> "$OUT" 2>&1 < /dev/null &
        echo $! > $S/$N.pid
        echo "Submitted batch job $N"
    """)
    write_command(fake_bin, "sacct", "echo 'sacct: error: Slurm accounting storage is disabled' >&2; exit 1\n")
    write_command(fake_bin, "squeue", LOG + f"""
        for a in "$@"; do case "$a" in --jobs=*) IDS=${{a#--jobs=}};; esac; done
        for id in ${{IDS//,/ }}; do
          if kill -0 $(cat {state}/$id.pid) 2>/dev/null; then echo "$id R"; else echo "$id CD"; fi
        done
    """)
    write_command(fake_bin, "scancel", LOG + f"""
        for id in "$@"; do kill -TERM -- -$(cat {state}/$id.pid) 2>/dev/null; done
        exit 0
    """)
    return state


def test_htex_runs_tasks_on_slurm_blocks(local_slurm, fake_bin, tmp_path, no_thread_leak):
    @parsl.python_app
    def square(x):
        return x * x

    provider = parsl.SlurmProvider(partition="debug", init_blocks=1, exclusive=False, worker_init="export FROM_INIT=1")
    config = parsl.Config(executors=[parsl.HighThroughputExecutor(
        label="htex", max_workers_per_node=2, heartbeat_period=0.5, heartbeat_threshold=3,
        worker_port_range=(56000, 57000), provider=provider)], run_dir=str(tmp_path / "runinfo"))
    dfk = parsl.load(config)
    try:
        assert [square(i).result(timeout=T) for i in range(5)] == [0, 1, 4, 9, 16]
        executor = dfk.executors["htex"]
        [status] = executor.block_status().values()
        assert status.state == JobState.RUNNING
        job_pid = int((local_slurm / "101.pid").read_text())
        script = (local_slurm.parent / "runinfo").rglob("submit_scripts/*.submit")
        assert any("#SBATCH --partition=debug" in p.read_text() for p in script)
    finally:
        dfk.cleanup()
    assert "scancel 101" in calls(fake_bin), calls(fake_bin)
    assert wait_until(lambda: not pid_alive(job_pid), T), "the block's process survived scancel"


def test_garbage_from_squeue_is_an_error_on_the_executor(local_slurm, fake_bin, tmp_path, no_thread_leak):
    provider = parsl.SlurmProvider(init_blocks=1, exclusive=False)
    config = parsl.Config(executors=[parsl.HighThroughputExecutor(
        label="htex", max_workers_per_node=1, worker_port_range=(56000, 57000), provider=provider)],
        run_dir=str(tmp_path / "runinfo"))
    dfk = parsl.load(config)
    try:
        write_command(fake_bin, "squeue", "echo '<html>502 Bad Gateway</html>'\n")
        with pytest.raises(ParslError, match="cannot read the output of 'squeue.*502 Bad Gateway"):
            dfk.executors["htex"].block_status()
        job_pid = int((local_slurm / "101.pid").read_text())
    finally:
        dfk.cleanup()
    assert "scancel 101" in calls(fake_bin)
    assert wait_until(lambda: not pid_alive(job_pid), T), "the block was not cancelled at cleanup"


def test_a_wrong_partition_fails_the_executor_with_sbatchs_message(fake_bin, tmp_path, no_thread_leak):
    write_command(fake_bin, "sbatch", "echo 'sbatch: error: invalid partition specified: nope' >&2\nexit 1\n")
    config = parsl.Config(executors=[parsl.HighThroughputExecutor(
        label="htex", worker_port_range=(56000, 57000), provider=parsl.SlurmProvider(partition="nope"))],
        run_dir=str(tmp_path / "runinfo"))
    with pytest.raises(ParslError, match="sbatch: error: invalid partition specified: nope"):
        parsl.load(config)
    parsl.clear()


@pytest.mark.skipif(shutil.which("sbatch") is None, reason="Slurm's client (sbatch) is not installed here")
def test_the_real_sbatch_refusing_a_job_is_quoted(tmp_path):
    """The real Slurm client: without a reachable controller it fails with its own message, with
    one (e.g. the test cluster) the partition does not exist. Either way the error quotes sbatch."""
    provider = parsl.SlurmProvider(partition="pervade-no-such-partition", cmd_timeout=30)
    provider.script_dir = str(tmp_path / "scripts")
    with pytest.raises(ParslError, match=r"'sbatch .*' failed with exit code \d+: sbatch: "):
        provider.submit("true", 1, "b0", "")
