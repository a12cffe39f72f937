"""A single-node SLURM for a test: munged, slurmctld and slurmd on loopback, all in a scratch folder.

Debian's ``slurm-wlm`` and ``munge`` packages, started by hand as a container's CI image does: no
systemd, no cgroups (``proctrack/linuxproc``, ``task/none``), no accounting database. Everything the
daemons write (key, sockets, state, spool, logs) lives in the scratch folder; the system's
``/etc/slurm`` and ``/etc/munge`` are not touched. Clients find the cluster through ``SLURM_CONF``.

The node declares 4 CPUs and 16 GB (``SlurmdParameters=config_overrides``) so that
``docs/slurm/run_lesson.sbatch``'s own request (``--cpus-per-task=4 --mem=16G``) fits a 2-core test
machine unchanged; the jobs are small.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from classroom_parts import free_port, wait_for

# The node is called localhost: batchspawner proxies to the host squeue names, which must be loopback.
NODE = "localhost"


def _conf(d: Path, ctld_port: int, slurmd_port: int) -> str:
    host = socket.gethostname().split(".")[0]
    return f"""# written by tests/classroom/slurm_parts.py
ClusterName=toyattntest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
AuthInfo=socket={d}/munge/munge.socket
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
NodeName={NODE} NodeAddr=127.0.0.1 NodeHostname={host} CPUs=4 RealMemory=16384 State=UNKNOWN
PartitionName=debug Nodes={NODE} Default=YES MaxTime=INFINITE State=UP
"""


class Slurm:
    def __init__(self, folder: Path):
        self.folder = folder
        self.env = dict(os.environ, SLURM_CONF=str(folder / "slurm.conf"))

    def run(self, *cmd: str, user: str | None = None, cwd: Path | None = None, env: dict | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess:
        prefix = ["runuser", "-u", user, "--"] if user else []
        return subprocess.run([*prefix, *cmd], cwd=cwd, env={**self.env, **(env or {})}, capture_output=True,
                              text=True, timeout=timeout)

    def job_state(self, job_id: str) -> str:
        out = self.run("scontrol", "show", "job", job_id).stdout
        return next((w.split("=", 1)[1] for w in out.split() if w.startswith("JobState=")), "GONE")

    def wait_job(self, job_id: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while (state := self.job_state(job_id)) in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING"):
            if time.monotonic() > deadline:
                self.run("scancel", job_id)
                raise AssertionError(f"job {job_id} still {state} after {timeout:.0f} s; slurmd log:\n"
                                     + self.log("slurmd"))
            time.sleep(1)
        return state

    def log(self, name: str) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else "(no log)"


@contextlib.contextmanager
def slurm_cluster(folder: Path):
    """munged + slurmctld + slurmd for the block; every daemon stopped after (and its jobs with it)."""
    folder.mkdir(mode=0o755, exist_ok=True)
    for sub in ("munge", "state", "spool"):
        (folder / sub).mkdir(mode=0o755)
    key = folder / "munge" / "munge.key"
    subprocess.run(["mungekey", "--create", f"--keyfile={key}"], check=True, capture_output=True)
    key.chmod(0o400)
    (folder / "slurm.conf").write_text(_conf(folder, free_port(), free_port()))
    cluster = Slurm(folder)
    procs: list[subprocess.Popen] = []
    try:
        procs.append(subprocess.Popen(
            ["munged", "--foreground", "--force", f"--socket={folder}/munge/munge.socket", f"--key-file={key}",
             f"--pid-file={folder}/munge/munged.pid", f"--log-file={folder}/munge/munged.log",
             f"--seed-file={folder}/munge/munged.seed"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))
        wait_for("munged", lambda: (folder / "munge" / "munge.socket").exists(), 30, procs[-1], folder / "munge" / "munged.log")
        procs.append(subprocess.Popen(["slurmctld", "-D", "-i", "-f", str(folder / "slurm.conf")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=cluster.env))
        procs.append(subprocess.Popen(["slurmd", "-D", "-N", NODE, "-f", str(folder / "slurm.conf")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=cluster.env))

        def node_idle() -> bool:
            out = cluster.run("sinfo", "--noheader", "-o", "%t").stdout.strip()
            return out in ("idle", "mix", "alloc")

        try:
            wait_for("the SLURM node", node_idle, 60, procs[-1], folder / "slurmd.log")
        except AssertionError as err:
            raise AssertionError(f"{err}\nslurmctld log:\n{cluster.log('slurmctld')}") from None
        yield cluster
    finally:
        _cancel_every_job(cluster)
        for proc in reversed(procs):  # slurmd first, then slurmctld, then munged
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        _end_job_steps_of(folder / "slurm.conf")


def _cancel_every_job(cluster: Slurm) -> None:
    """scancel what the test left queued or running, and wait until slurmd has ended its job steps."""
    with contextlib.suppress(Exception):
        cluster.run("scancel", "--full", "--partition=debug")
        deadline = time.monotonic() + 30
        while cluster.run("squeue", "--noheader").stdout.strip() and time.monotonic() < deadline:
            time.sleep(0.5)


def _end_job_steps_of(conf: Path) -> None:
    """Backstop: end, by id, any slurmstepd of this cluster (its environment names this slurm.conf)."""
    marker = f"SLURM_CONF={conf}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() == "slurmstepd" and marker in (entry / "environ").read_bytes().split(b"\0"):
                os.kill(int(entry.name), signal.SIGKILL)
        except OSError:
            pass
