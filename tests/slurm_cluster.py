"""A one-node SLURM cluster on localhost, started by hand (no systemd): munged, slurmctld, slurmd.

Everything lives in one folder: its own munge key and socket, a slurm.conf describing this machine
(``slurmd -C``), state, spool and logs, and free TCP ports, so it disturbs no SLURM or munge already
on the machine. Clients find it through ``SLURM_CONF`` (``env()``). ``stop()`` ends exactly the
daemons it started, by PID.
"""
from __future__ import annotations

import logging
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

log = logging.getLogger(__name__)

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "srun", "squeue", "sinfo", "scontrol", "scancel")
PARTITION = "test"

SLURM_CONF = """\
ClusterName=pipelinetest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser={user}
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# no cgroups in a container: track processes by parent PID, bind nothing
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
# cores and memory are consumable: jobs that fit share the node
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
# no slurmdbd: finished jobs are visible to squeue for MinJobAge seconds
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge={min_job_age}
ReturnToService=2
SchedulerType=sched/backfill
{node_line}
PartitionName={partition} Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def missing_binaries() -> list[str]:
    return [b for b in BINARIES if shutil.which(b) is None and not Path("/usr/sbin", b).exists()]


def _which(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_line() -> tuple[str, str]:
    """This machine as slurmd sees it: (hostname, 'NodeName=... CPUs=... RealMemory=...')."""
    out = subprocess.run([_which("slurmd"), "-C"], capture_output=True, text=True, check=True, timeout=30).stdout
    line = next(l for l in out.splitlines() if l.startswith("NodeName="))
    fields = [f for f in line.split() if not f.startswith("UpTime=")]
    host = fields[0].split("=", 1)[1]
    return host, " ".join([*fields, "NodeAddr=127.0.0.1", "State=UNKNOWN"])


class LocalSlurm:
    def __init__(self, root: Path, min_job_age: int = 3600):
        self.root = Path(root)
        self.min_job_age = min_job_age
        self.procs: list[subprocess.Popen] = []
        self.conf = self.root / "slurm.conf"
        self.host = ""

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Clients' environment: SLURM_CONF, and the srun shim (see ``_srun_shim``) first on PATH."""
        env = dict(os.environ if base is None else base)
        env["SLURM_CONF"] = str(self.conf)
        env["PATH"] = f"{self.root / 'bin'}{os.pathsep}{env.get('PATH', os.defpath)}"
        return env

    def _srun_shim(self) -> None:
        """Inside a job, snakemake-executor-plugin-slurm-jobstep runs each rule through a nested
        ``srun`` with every SLURM_* variable but the job's ids removed, SLURM_CONF included. A real
        cluster's srun then reads /etc/slurm/slurm.conf (or slurmd's configless cache); this test
        cluster's config lives elsewhere, so the real srun is called with SLURM_CONF set again."""
        shim = self.root / "bin" / "srun"
        shim.parent.mkdir(parents=True, exist_ok=True)
        shim.write_text(f'#!/bin/sh\nSLURM_CONF={shlex.quote(str(self.conf))} exec {shlex.quote(_which("srun"))} "$@"\n')
        shim.chmod(0o755)

    def _spawn(self, name: str, cmd: list[str]) -> None:
        out = open(self.root / "log" / f"{name}.out", "w")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env(),
                                start_new_session=True)
        out.close()
        self.procs.append(proc)
        log.info("started %s (pid %d)", name, proc.pid)

    def start(self, timeout: float = 60) -> None:
        for sub in ("munge", "state", "spool", "log"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        munge_dir = self.root / "munge"
        munge_dir.chmod(0o700)  # munged refuses a key or socket in a folder others may write
        key = munge_dir / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        sock = munge_dir / "munge.sock"
        self._spawn("munged", [_which("munged"), "--foreground", "--force", f"--key-file={key}",
                               f"--socket={sock}", f"--pid-file={munge_dir / 'munged.pid'}",
                               f"--seed-file={munge_dir / 'munged.seed'}",
                               f"--log-file={self.root / 'log' / 'munged.log'}"])
        self._wait(lambda: sock.exists(), timeout, "munged's socket")
        self.host, line = node_line()
        import getpass

        self.conf.write_text(SLURM_CONF.format(
            host=self.host, ctld_port=_free_port(), d_port=_free_port(), user=getpass.getuser(),
            munge_socket=sock, root=self.root, min_job_age=self.min_job_age, node_line=line,
            partition=PARTITION))
        self._srun_shim()
        self._spawn("slurmctld", [_which("slurmctld"), "-D", "-f", str(self.conf)])
        self._spawn("slurmd", [_which("slurmd"), "-D", "-f", str(self.conf)])
        self._wait(self._node_idle, timeout, "the node to be idle in sinfo")

    def _node_idle(self) -> bool:
        for proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}; logs in {self.root / 'log'}:\n"
                                   + self.logs())
        res = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, env=self.env(),
                             timeout=30)
        return res.returncode == 0 and res.stdout.strip() == "idle"

    def _wait(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}; logs:\n{self.logs()}")
            time.sleep(0.5)

    def logs(self) -> str:
        parts = []
        for f in sorted((self.root / "log").glob("*")):
            parts.append(f"--- {f.name}\n" + "\n".join(f.read_text(errors="replace").splitlines()[-30:]))
        return "\n".join(parts)

    def submitted_jobs(self) -> int:
        """Jobs slurmctld accepted, from its log (one 'sched: _slurm_rpc_submit_batch_job' line each)."""
        text = (self.root / "log" / "slurmctld.log").read_text(errors="replace")
        return sum("_slurm_rpc_submit_batch_job" in line for line in text.splitlines())

    def stop(self) -> None:
        """Cancel this cluster's jobs, then SIGTERM each daemon this object started (reverse order),
        SIGKILL any that lingers."""
        if self.procs and self.conf.exists():
            try:
                subprocess.run(["scancel", "--full", f"--partition={PARTITION}"], env=self.env(),
                               capture_output=True, timeout=30)
            except (OSError, subprocess.SubprocessError) as exc:
                log.warning("scancel failed (%s); stopping the daemons anyway", exc)
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)
        self.procs.clear()
