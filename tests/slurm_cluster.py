"""A real one-node Slurm cluster on localhost for the tests (Debian's ``slurm-wlm`` and ``munge``).

:func:`local_slurm` generates a fresh munge key in a temporary folder, starts ``munged`` on a
private socket, writes a ``slurm.conf`` there (this host as the one node, ``NodeAddr=127.0.0.1``,
proctrack/linuxproc, task/none, select/cons_tres, munge auth on the private socket, no
accounting: ``sacct`` does not work, and the code under test must not need it), starts
``slurmctld`` and ``slurmd`` on free ports, waits until ``sinfo`` shows the node idle and yields
the environment (``SLURM_CONF``) for the commands; everything is stopped at the end. It needs
root (the daemons run as root, and so do the jobs); :func:`missing` says why it cannot start.

The session fixture :func:`slurm` starts it once; a test module uses it with
``from slurm_cluster import slurm  # noqa: F401`` (a conftest.py in a stage folder would shadow
the top one, which the tests import as ``conftest``).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

DAEMONS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol", "scancel")
PARTITION = "debug"


def missing() -> str | None:
    """Why the cluster cannot start here (binaries missing, not root), or None."""
    gone = [name for name in DAEMONS if not shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin")]
    if gone:
        return (f"Slurm/munge not installed ({', '.join(gone)} not found): "
                "apt-get install -y slurm-wlm munge (scripts/test.sh does it as root)")
    if os.geteuid() != 0:
        return "the one-node Slurm cluster runs its daemons as root; run the tests as root"
    return None


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _node_line() -> str:
    """This host as slurmd sees it (CPUs, sockets, cores, RealMemory): a node that matches it is not drained."""
    line = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout.splitlines()[0]
    return f"{line} NodeAddr=127.0.0.1 State=UNKNOWN"


def _write_conf(root: Path, host: str, munge_socket: Path) -> Path:
    ctld_port, slurmd_port = _free_ports(2)
    conf = root / "slurm.conf"
    conf.write_text("\n".join([
        "ClusterName=pftest",
        f"SlurmctldHost={host}(127.0.0.1)",
        f"SlurmctldPort={ctld_port}",
        f"SlurmdPort={slurmd_port}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={munge_socket},cred_expire=5",   # a requeued job waits this long (default 120 s)
        f"StateSaveLocation={root / 'state'}",
        f"SlurmdSpoolDir={root / 'spool'}",
        f"SlurmctldPidFile={root / 'slurmctld.pid'}",
        f"SlurmdPidFile={root / 'slurmd.pid'}",
        f"SlurmctldLogFile={root / 'slurmctld.log'}",
        f"SlurmdLogFile={root / 'slurmd.log'}",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core",
        "SchedulerType=sched/builtin",
        "SchedulerParameters=sched_interval=1",     # a requeued task starts within seconds
        "AccountingStorageType=accounting_storage/none",
        "JobAcctGatherType=jobacct_gather/none",
        "JobCompType=jobcomp/none",
        "MpiDefault=none",
        "ReturnToService=2",
        "KillWait=5",
        "MinJobAge=600",
        "SlurmctldTimeout=30",
        "SlurmdTimeout=30",
        _node_line(),
        f"PartitionName={PARTITION} Nodes={host} Default=YES MaxTime=INFINITE State=UP",
        "",
    ]))
    return conf


def _start_munge(root: Path) -> Path:
    """munged with a fresh key of its own, on a private socket (its path)."""
    key, sock = root / "munge.key", root / "munge.socket"
    subprocess.run(["mungekey", "--create", f"--keyfile={key}"], check=True, capture_output=True)
    key.chmod(0o400)
    subprocess.run(["munged", "--force", f"--key-file={key}", f"--socket={sock}", f"--pid-file={root / 'munged.pid'}",
                    f"--log-file={root / 'munged.log'}", f"--seed-file={root / 'munged.seed'}"],
                   check=True, capture_output=True)
    return sock


def _wait(what: str, check, timeout: float, logs: list[Path]) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.2)
    tails = "\n".join(f"--- {p.name}\n" + p.read_text()[-1500:] for p in logs if p.is_file())
    raise RuntimeError(f"the test Slurm cluster did not come up ({what}):\n{tails}")


def _stop(pidfile: Path, timeout: float = 10.0) -> None:
    """SIGTERM the daemon of ``pidfile`` and wait (up to ``timeout``) until it is gone."""
    try:
        pid = int(pidfile.read_text().split()[0])
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError, IndexError):
        return
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return
        if state in ("Z", "X"):        # exited; its parent (not us: it daemonized) reaps it
            return
        time.sleep(0.1)


@contextlib.contextmanager
def local_slurm(root: Path) -> Iterator[dict[str, str]]:
    """Start munged, slurmctld and slurmd under ``root``; yield the environment for Slurm commands
    (``SLURM_CONF``, and ``/usr/sbin`` on PATH), stop the daemons at the end."""
    root.mkdir(parents=True, exist_ok=True)
    for d in ("state", "spool"):
        (root / d).mkdir(exist_ok=True)
    host = socket.gethostname().split(".")[0]
    munge_socket = _start_munge(root)
    conf = _write_conf(root, host, munge_socket)
    env = {**os.environ, "SLURM_CONF": str(conf), "PATH": os.environ.get("PATH", "") + ":/usr/sbin"}
    logs = [root / "slurmctld.log", root / "slurmd.log", root / "munged.log"]
    try:
        subprocess.run(["slurmctld", "-c", "-f", str(conf)], env=env, check=True, capture_output=True)
        subprocess.run(["slurmd", "-N", host, "-f", str(conf)], env=env, check=True, capture_output=True)

        def idle() -> bool:
            r = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], env=env, capture_output=True, text=True)
            return r.returncode == 0 and r.stdout.strip() == "idle"
        _wait("sinfo never showed the node idle", idle, 60, logs)
        yield env
    finally:
        subprocess.run(["scancel", "--user=root"], env=env, capture_output=True)   # this cluster's jobs only
        for pidfile in ("slurmd.pid", "slurmctld.pid", "munged.pid"):
            _stop(root / pidfile)


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """The environment (``SLURM_CONF``, PATH) of a one-node Slurm cluster on this host, started
    once for the session. Skipped, saying why, where Slurm/munge are not installed or the tests do
    not run as root, except under CI (``CI=true``), where that fails: scripts/test.sh installs
    them, and a cluster test that silently skips there checks nothing."""
    why = missing()
    if why:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{why}; CI=true, so the Slurm tests must run")
        pytest.skip(why)
    with local_slurm(tmp_path_factory.mktemp("slurm")) as env:
        yield env
