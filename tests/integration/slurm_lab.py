"""A real Slurm controller for tests: its own munged and slurmctld under one temp dir.

No pytest dependency:

    lab = SlurmLab(Path("/tmp/slurm-lab"), nodes=["n1", "n2"])
    lab.start()
    subprocess.run(["scontrol", "show", "node", "-o"], env=lab.env())
    lab.stop()

The nodes have no slurmd: slurmctld holds their state, which is all drain and resume touch.
SlurmdTimeout=0 keeps it from ever marking them down for not answering, and `start` moves
them from UNKNOWN to IDLE (DOWN, then RESUME) as a registered node would be.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path

from processes import wait_for

MUNGED_BIN = "/usr/sbin/munged"
MUNGEKEY_BIN = "/usr/sbin/mungekey"
SLURMCTLD_BIN = "/usr/sbin/slurmctld"
SCONTROL_BIN = shutil.which("scontrol") or "/usr/bin/scontrol"
READY_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0


class SlurmLabError(RuntimeError):
    """The lab could not start munged or slurmctld; the message quotes their log."""


def slurm_missing() -> str | None:
    """Why the lab cannot run here (the binaries it needs), or None when it can."""
    missing = [
        path
        for path in (MUNGED_BIN, MUNGEKEY_BIN, SLURMCTLD_BIN, SCONTROL_BIN)
        if not os.access(path, os.X_OK)
    ]
    if not missing:
        return None
    return (
        f"{', '.join(missing)} missing: install them with "
        "`apt-get install slurmctld slurm-client munge`"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class SlurmLab:
    def __init__(self, root: Path, nodes: Sequence[str]) -> None:
        self.root = root
        self.nodes = list(nodes)
        self.conf = root / "slurm.conf"
        self.munge_socket = root / "run" / "munge.socket"
        self._processes: list[subprocess.Popen[bytes]] = []
        self._slurmctld: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def scontrol(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [SCONTROL_BIN, *args], env=self.env(), capture_output=True, text=True, timeout=30
        )

    def start(self) -> None:
        for folder in ("munge", "run", "state", "spool", "log"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        (self.root / "munge").chmod(0o700)
        try:
            self._start_munged()
            self._write_conf()
            self._start_slurmctld()
            self._make_nodes_idle()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop each daemon, newest first. slurmctld is killed outright: on SIGTERM it spends
        seconds saving state that the lab throws away. munged gets SIGTERM."""
        for proc in reversed(self._processes):
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL if proc is self._slurmctld else signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._processes.clear()
        self._slurmctld = None

    def _spawn(self, argv: list[str], log_name: str) -> subprocess.Popen[bytes]:
        with (self.root / "log" / log_name).open("wb") as log:
            proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        self._processes.append(proc)
        return proc

    def _start_munged(self) -> None:
        key = self.root / "munge" / "munge.key"
        subprocess.run([MUNGEKEY_BIN, "--create", f"--keyfile={key}"], check=True)
        argv = [
            MUNGED_BIN,
            "--foreground",
            # munged refuses to run as root, or with a key dir it finds too open, without it.
            "--force",
            f"--socket={self.munge_socket}",
            f"--key-file={key}",
            f"--log-file={self.root / 'log' / 'munged.log'}",
            f"--pid-file={self.root / 'run' / 'munged.pid'}",
            f"--seed-file={self.root / 'munge' / 'munged.seed'}",
        ]
        proc = self._spawn(argv, "munged.out")
        if not wait_for(lambda: self.munge_socket.exists() or proc.poll() is not None, 10.0):
            raise SlurmLabError("munged did not create its socket")
        if proc.poll() is not None:
            raise SlurmLabError(f"munged exited: {self._log('munged.out')}")

    def _write_conf(self) -> None:
        host = socket.gethostname().split(".")[0]
        root = self.root
        lines = [
            "ClusterName=dcctltest",
            f"SlurmctldHost={host}(127.0.0.1)",
            f"SlurmctldPort={_free_port()}",
            f"SlurmdPort={_free_port()}",
            "AuthType=auth/munge",
            f"AuthInfo=socket={self.munge_socket}",
            "CredType=cred/munge",
            # Whoever runs the tests owns the controller, and so may drain and resume.
            f"SlurmUser={getpass.getuser()}",
            f"StateSaveLocation={root / 'state'}",
            f"SlurmdSpoolDir={root / 'spool'}",
            f"SlurmctldPidFile={root / 'run' / 'slurmctld.pid'}",
            f"SlurmdPidFile={root / 'run' / 'slurmd.pid'}",
            f"SlurmctldLogFile={root / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={root / 'log' / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SchedulerType=sched/builtin",
            "SelectType=select/linear",
            "MpiDefault=none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            # No slurmd runs: never mark the nodes down for not answering.
            "SlurmdTimeout=0",
            "ReturnToService=2",
            f"NodeName={','.join(self.nodes)} CPUs=1 State=UNKNOWN NodeAddr=127.0.0.1",
            "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
        ]
        self.conf.write_text("\n".join(lines) + "\n")

    def _start_slurmctld(self) -> None:
        # -D: foreground, so stop() owns it; -i: ignore state files of an earlier run.
        proc = self._spawn([SLURMCTLD_BIN, "-D", "-i", "-f", str(self.conf)], "slurmctld.out")
        self._slurmctld = proc
        if not wait_for(lambda: self._ping_up() or proc.poll() is not None, READY_TIMEOUT_S):
            raise SlurmLabError(f"slurmctld not up in {READY_TIMEOUT_S:.0f} s: {self._log()}")
        if proc.poll() is not None:
            raise SlurmLabError(f"slurmctld exited: {self._log()}")

    def _ping_up(self) -> bool:
        return "is UP" in self.scontrol("ping").stdout

    def _make_nodes_idle(self) -> None:
        names = ",".join(self.nodes)
        for state in ("State=DOWN", "State=RESUME"):
            done = self.scontrol("update", f"NodeName={names}", state, "Reason=lab start")
            if done.returncode != 0:
                raise SlurmLabError(f"scontrol update {state}: {done.stderr.strip()}")

    def _log(self, name: str = "slurmctld.out") -> str:
        text = (self.root / "log" / name).read_text(errors="replace").strip().splitlines()
        return " | ".join(text[-5:]) or "(empty log)"
