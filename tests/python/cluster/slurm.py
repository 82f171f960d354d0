"""A real Slurm cluster on one machine for tests: Debian's slurm-wlm and munge, a controller
and several nodes, each in a network namespace of its own (tests/python/cluster/netns.py).

Who calls it: test fixtures, from the test's main thread (no threads of its own).

    cluster = SlurmCluster(workdir, nodes=3).start()
    subprocess.run(["sbatch", "-N2", "job.sh"], env=cluster.env)
    cluster.interchange_address   # where a process of the tests listens so that jobs reach it
    cluster.stop()

Why namespaces, not `slurmd -N name` on loopback: Debian's slurmd is built without
--enable-multiple-slurmd, so one machine runs one slurmd per network namespace. Each slurmd
also gets a UTS namespace whose hostname is its node name: it finds its NodeName from the
hostname, and jobs see distinct hosts (`hostname`, addresses, network namespace inodes) as on
a real cluster. The controller sits in a namespace of its own too, so its fixed ports
(6817/6818) never collide with another session's cluster or a system Slurm. All state —
munge key and socket, slurm.conf, spool, logs — lives in `workdir`; clients find the cluster
through SLURM_CONF (in `env`). What works without systemd and cgroups in a container:
proctrack/linuxproc, task/none, no accounting daemon (sacct says accounting is disabled, so
tools fall back to squeue, as Parsl's SlurmProvider does).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

from .netns import Network, NetworkUnavailable, check_available, running

PACKAGES = ["slurm-wlm", "munge"]  # Debian bookworm: Slurm 22.05
BINARIES = ["slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo", "scontrol", "munged"]


class SlurmUnavailable(RuntimeError):
    """This machine cannot run the test cluster (the reason says why)."""


def ensure_installed() -> None:
    """Installs slurm-wlm and munge with apt-get when a program is missing."""
    if all(shutil.which(b) for b in BINARIES):
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise SlurmUnavailable(f"Slurm is not installed and cannot be (needs root and apt-get): {PACKAGES}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    apt = ["apt-get", "-o", "DPkg::Lock::Timeout=600", "-y", "-q"]
    install = apt + ["install", "--no-install-recommends", *PACKAGES]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run(apt + ["update"], env=env, capture_output=True, check=True)
        done = subprocess.run(install, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"apt-get install {' '.join(PACKAGES)} failed:\n{done.stdout}\n{done.stderr}")
    missing = [b for b in BINARIES if not shutil.which(b)]
    if missing:
        raise RuntimeError(f"{missing} still missing after installing {PACKAGES}")


def _mem_total_mb() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    return 1024


class SlurmCluster:
    """A controller and `nodes` compute nodes named node1..nodeN in one partition.

    After start(): `partition`, `node_names`, `nodes` (Hosts with .name/.address/.inode),
    `env` (os.environ plus SLURM_CONF) for sbatch/squeue/scancel/sinfo, `interchange_address`
    (the host's bridge address: a socket bound there is reachable from every node), `run()`.
    """

    def __init__(self, workdir: str, nodes: int = 3, cpus_per_node: int = 2, partition: str = "pervade",
                 start_timeout: float = 60.0):
        self.workdir = os.path.abspath(workdir)
        self.partition = partition
        self.node_names = [f"node{i + 1}" for i in range(nodes)]
        self.cpus_per_node = cpus_per_node
        self.start_timeout = start_timeout
        self.conf = os.path.join(self.workdir, "slurm.conf")
        self.env = dict(os.environ, SLURM_CONF=self.conf)
        self.network = None
        self._procs: list = []  # (name, Popen) of the daemons, in start order
        self._inodes: set = set()  # of the cluster's network namespaces

    # -- start ---------------------------------------------------------------------------------

    def start(self) -> "SlurmCluster":
        try:
            check_available()
        except NetworkUnavailable as e:
            raise SlurmUnavailable(str(e)) from e
        ensure_installed()
        os.makedirs(os.path.join(self.workdir, "log"), exist_ok=True)
        try:
            self.network = Network(["ctl", *self.node_names])
            self._inodes = {h.inode for h in self.network.hosts}
            self._start_munge()
            self._write_conf()
            ctl = self.network.host("ctl")
            self._spawn("slurmctld", ctl.argv(["slurmctld", "-D", "-i", "-f", self.conf], hostname="ctl"))
            for name in self.node_names:
                os.makedirs(os.path.join(self.workdir, "spool", name), exist_ok=True)
                self._spawn(f"slurmd-{name}",
                            self.network.host(name).argv(["slurmd", "-D", "-f", self.conf], hostname=name))
            self._wait_idle()
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def nodes(self) -> list:
        return [self.network.host(n) for n in self.node_names]

    @property
    def interchange_address(self) -> str:
        return self.network.host_address

    def _spawn(self, name: str, argv: list) -> subprocess.Popen:
        with open(os.path.join(self.workdir, "log", f"{name}.out"), "ab") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, env=self.env)
        self._procs.append((name, proc))
        return proc

    def _start_munge(self) -> None:
        d = os.path.join(self.workdir, "munge")
        os.makedirs(d, mode=0o711, exist_ok=True)
        os.chmod(d, 0o711)  # munged wants the socket's directory searchable by all
        key = os.path.join(d, "munge.key")
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o400)
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(1024))
        self.munge_socket = os.path.join(d, "munge.socket")
        self._spawn("munged", ["munged", "--foreground", "--force", f"--socket={self.munge_socket}",
                               f"--key-file={key}", f"--log-file={d}/munged.log", f"--pid-file={d}/munged.pid",
                               f"--seed-file={d}/munged.seed"])
        if not self._wait(lambda: subprocess.run(["munge", "-n", "-S", self.munge_socket],
                                                 capture_output=True).returncode == 0, 20):
            raise RuntimeError(f"munged did not answer on {self.munge_socket}: {self._log('munged')}")

    def _write_conf(self) -> None:
        w = self.workdir
        ctl = self.network.host("ctl")
        mem = max(1024, _mem_total_mb() // len(self.node_names))
        lines = [
            "ClusterName=pervade",
            f"SlurmctldHost=ctl({ctl.address})",
            "SlurmUser=root", "SlurmdUser=root",
            "AuthType=auth/munge", "CredType=cred/munge", f"AuthInfo=socket={self.munge_socket}",
            f"StateSaveLocation={w}/state",
            f"SlurmdSpoolDir={w}/spool/%n",
            f"SlurmctldPidFile={w}/slurmctld.pid", f"SlurmdPidFile={w}/spool/%n/slurmd.pid",
            f"SlurmctldLogFile={w}/log/slurmctld.log", f"SlurmdLogFile={w}/log/slurmd-%n.log",
            # No systemd and no cgroup delegation in a container: track processes by /proc,
            # bind nothing, gather no accounting.
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none", "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none", "MpiDefault=none",
            # FIFO: a job starts as soon as it is submitted and fits.
            "SchedulerType=sched/builtin", "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core",
            # Every node is the same machine: take the CPUs and memory of the config, not the
            # hardware's (the test decides how big a node is).
            "SlurmdParameters=config_overrides",
            "ReturnToService=2", "SlurmdTimeout=60", "SlurmctldTimeout=60",
            # scancel: SIGTERM, then SIGKILL 2 s later (30 s by default).
            "KillWait=2",
        ]
        for node in self.nodes:
            lines.append(f"NodeName={node.name} NodeAddr={node.address} CPUs={self.cpus_per_node} "
                         f"RealMemory={mem} State=UNKNOWN")
        lines.append(f"PartitionName={self.partition} Nodes={','.join(self.node_names)} Default=YES "
                     "MaxTime=INFINITE State=UP")
        os.makedirs(f"{w}/state", exist_ok=True)
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")

    def _wait_idle(self) -> None:
        def idle():
            self._check_daemons()
            out = self.run(["sinfo", "-h", "-N", "-o", "%N %t"], check=False).stdout.split("\n")
            states = dict(line.split() for line in out if line.strip())
            return all(states.get(n) == "idle" for n in self.node_names)

        if not self._wait(idle, self.start_timeout):
            raise RuntimeError(f"Slurm nodes not idle after {self.start_timeout} s:\n"
                               f"{self.run(['sinfo', '-N'], check=False).stdout}\n{self._log('slurmctld')}")

    def _check_daemons(self) -> None:
        for name, proc in self._procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self._log(name)}")

    def _log(self, name: str) -> str:
        try:
            with open(os.path.join(self.workdir, "log", f"{name}.out")) as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    @staticmethod
    def _wait(condition, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    # -- use -----------------------------------------------------------------------------------

    def run(self, argv: list, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """Runs a Slurm client (sbatch, squeue, ...) against this cluster, in its workdir (where a
        job without --output writes slurm-<id>.out)."""
        return subprocess.run(argv, env=self.env, cwd=self.workdir, capture_output=True, text=True, check=check,
                              timeout=timeout)

    def active_jobs(self) -> list:
        """Ids of jobs pending, running or completing."""
        return self.run(["squeue", "-h", "-o", "%i"]).stdout.split()

    def job_state(self, job_id: str) -> str:
        out = self.run(["scontrol", "show", "job", job_id], check=False).stdout
        for field in out.split():
            if field.startswith("JobState="):
                return field.split("=", 1)[1]
        return "UNKNOWN"

    # -- stop ----------------------------------------------------------------------------------

    def leftover_pids(self) -> list:
        """Live processes of this cluster, also after stop(): any process in one of its network
        namespaces (daemons, job steps, jobs) or naming its workdir (munged, the daemons)."""
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            if not running(int(entry)):
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmdline = f.read()
                inode = os.stat(f"/proc/{entry}/ns/net").st_ino
            except OSError:
                continue
            if inode in self._inodes or self.workdir.encode() in cmdline:
                pids.append(int(entry))
        return pids

    def stop(self) -> None:
        """Cancels every job, stops the daemons (nodes, controller, munged), removes the network."""
        if self.network and any(p.poll() is None for n, p in self._procs if n == "slurmctld"):
            self.run(["scancel", "--full", f"--partition={self.partition}"], check=False)
            self._wait(lambda: not self.run(["squeue", "-h", "-o", "%i"], check=False).stdout.split(), 15)
        for name, proc in reversed(self._procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=15)
        if self.network:
            self.network.close()  # also kills job steps that outlived their slurmd
            self.network = None
