"""Fan-out benchmark: `dcctl check` vs OpenSSH `xargs -P ssh` vs `ansible -m setup`, side by side.

Starts N loopback "hosts" (real sshd on 127.10.x.y, 16 addresses per sshd, one host key), then
for each N runs, in the same process and on the same hosts:

- `dcctl check` (one warm exec per host: the node runtime is cached before timing);
- the identical node command through OpenSSH's client, `xargs -P FORKS ssh ...`;
- `ansible all -m setup -f FORKS` (ansible-core from PyPI in its own venv), N <= 256 only;
- optionally `dcctl --json check` with a share of the hosts refusing or silent (--faulty);

and the start-up time of `dcctl --help` and `dcctl inventory hosts` against `import typer`.
Prints a table and writes everything as JSON. See tests/perf/README.md.

    python tests/perf/fanout.py --hosts 16,64,256,1000 --forks 64 --out perf.json

Not a pytest module (name and folder are outside pyproject's testpaths).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import ipaddress
import json
import math
import os
import platform
import pwd
import re
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))  # sshlab

from sshlab import (
    MAX_LISTEN_SOCKS,
    NODE_PYTHON,
    SilentListener,
    Sshd,
    SshLab,
    known_hosts_lines,
    refused_endpoint,
    write_inventory,
)

REPO = Path(__file__).resolve().parents[2]
FIRST_ADDRESS = ipaddress.IPv4Address("127.10.0.1")  # tests use 127.0.0.x and 127.0.1.x
ADDRESSES_PER_OCTET = 250  # 127.10.K.1 .. 127.10.K.250: no .0 or .255 in a host address
TASK = "facts"  # what `dcctl check` runs on a node
TASK_TIMEOUT_S = 60.0  # `dcctl check --timeout` default: the node-side `timeout` wrapper
ANSIBLE_REQUIREMENT = "ansible-core~=2.19.0"
PERF_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dcctl-perf"
SETTLE_TIMEOUT_S = 15.0
SLOW_SHELL_S = 5.0  # refuse to run: a stale lock in the login shell
FAST_SHELL_S = 0.02  # above: warn that the login shell weighs on the node side
BAD_RESULTS = ("fail", "error")
HEAVY_MODULES = (
    "paramiko",
    "cryptography",
    "rich",
    "yaml",
    "pydantic",
    "asyncio",
    "torch",
    "pynvml",
)
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAYLOAD_MARK = b"<dcctl-payload>"  # dcctl.node.payload.PAYLOAD_START
FATAL_MARK = b"Fatal Python error"


# ---------------------------------------------------------------------------------------------
# Measuring one command


@dataclass(frozen=True)
class Sample:
    """One timed command. CPU figures are seconds of user + system time."""

    wall_s: float
    client_cpu_s: float  # the command and every descendant it reaped (wait4 rusage)
    node_cpu_s: float  # the sshd sessions and the node commands they ran
    machine_cpu_s: float  # every process on the machine (/proc/stat), the harness included
    max_rss_mb: float  # largest resident set among the command and its reaped descendants
    # The command and its direct children together (dcctl's SSH worker processes), sampled
    # every RSS_SAMPLE_S: max_rss_mb alone would show only the largest of them.
    tree_peak_rss_mb: float
    exit_code: int


RSS_SAMPLE_S = 0.2
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


class TreeRss:
    """Peak of the summed resident sets of a process and its direct children."""

    def __init__(self, pid: int) -> None:
        self.peak_bytes = 0
        self._pid = pid
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return round(self.peak_bytes / 2**20, 1)

    def _sample(self) -> None:
        while True:
            pids = [self._pid, *_children(self._pid)]
            self.peak_bytes = max(self.peak_bytes, sum(_rss_bytes(pid) for pid in pids))
            if self._stop.wait(RSS_SAMPLE_S):
                return


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            found += [int(child) for child in task.read_text().split()]
    return found


def _rss_bytes(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE_BYTES
    except (OSError, IndexError, ValueError):
        return 0


def _machine_cpu_s() -> float:
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def _process_cpu_s(pid: int) -> float:
    """utime + stime of `pid` and of the children it reaped (so every finished sshd session)."""
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rfind(")") + 2 :].split()
        return sum(int(value) for value in fields[11:15]) / CLK_TCK
    return 0.0


def _children(pid: int) -> list[int]:
    with contextlib.suppress(OSError):
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return []


def _settle(sshds: Sequence[Sshd]) -> None:
    """Wait until no sshd has a session left, so the node CPU of the last one is counted."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while any(_children(sshd.pid) for sshd in sshds) and time.monotonic() < deadline:
        time.sleep(0.05)


def measure(
    argv: Sequence[str],
    *,
    env: dict[str, str],
    cwd: Path,
    stdout: Path,
    sshds: Sequence[Sshd],
    hold_stdin: bool = False,
    after_exit: Callable[[], None] | None = None,
) -> Sample:
    """Run argv to completion (stdout and stderr to files) and measure it.

    `hold_stdin` gives it a pipe that stays open until it exits (never written), so remote
    commands see no EOF on stdin while they run. `after_exit` runs before the sshds settle.
    """
    cpu_before = _machine_cpu_s()
    node_before = sum(_process_cpu_s(sshd.pid) for sshd in sshds)
    with stdout.open("wb") as out, stdout.with_suffix(".stderr").open("wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE if hold_stdin else subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=env,
            cwd=cwd,
            start_new_session=True,  # Ctrl-C reaches only the harness, which kills the group
        )
        tree_rss = TreeRss(proc.pid)
        try:
            _pid, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            tree_rss.stop()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        wall = time.perf_counter() - started
        tree_peak_rss_mb = tree_rss.stop()
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.stdin is not None:
            proc.stdin.close()
    if after_exit is not None:
        after_exit()
    _settle(sshds)
    return Sample(
        wall_s=round(wall, 3),
        client_cpu_s=round(usage.ru_utime + usage.ru_stime, 2),
        node_cpu_s=round(sum(_process_cpu_s(sshd.pid) for sshd in sshds) - node_before, 2),
        machine_cpu_s=round(_machine_cpu_s() - cpu_before, 2),
        max_rss_mb=round(usage.ru_maxrss / 1024, 1),
        tree_peak_rss_mb=tree_peak_rss_mb,
        exit_code=proc.returncode,
    )


# ---------------------------------------------------------------------------------------------
# The lab: N loopback hosts behind ceil(N/16) sshds, one host key, one port


@dataclass(frozen=True)
class Fleet:
    lab: SshLab
    sshds: list[Sshd]
    names: list[str]
    addresses: list[str]
    port: int

    def known_hosts(self, path: Path, n: int) -> Path:
        lines = [line for sshd in self.sshds for line in known_hosts_lines(sshd)][:n]
        path.write_text("".join(line + "\n" for line in lines))
        return path

    def sshds_for(self, n: int) -> list[Sshd]:
        return self.sshds[: math.ceil(n / MAX_LISTEN_SOCKS)]


def node_addresses(n: int) -> list[str]:
    return [
        str(FIRST_ADDRESS + (i // ADDRESSES_PER_OCTET) * 256 + i % ADDRESSES_PER_OCTET)
        for i in range(n)
    ]


def start_fleet(lab: SshLab, n: int) -> Fleet:
    addresses = node_addresses(n)
    host_key = lab.new_host_key()
    sshds: list[Sshd] = []
    for first in range(0, n, MAX_LISTEN_SOCKS):
        chunk = addresses[first : first + MAX_LISTEN_SOCKS]
        port = sshds[0].port if sshds else None  # one port for all: `ssh -p PORT` in xargs
        sshds.append(lab.start_sshd(chunk, port=port, host_key=host_key))
    names = [f"n{i + 1:04d}" for i in range(n)]
    return Fleet(lab, sshds, names, addresses, sshds[0].port)


def snapshot_dcctl(root: Path) -> Path:
    """A copy of this checkout's dcctl/ for the whole run, also imported here: the run takes
    minutes, and edits saved meanwhile must not mix two versions in one report."""
    src = root / "src"
    shutil.copytree(
        REPO / "dcctl", src / "dcctl", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    sys.path.insert(0, str(src))
    return src


def tree_digest(package: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def base_env(home: Path, src: Path) -> dict[str, str]:
    """A clean environment: a home whose ~/.ssh is empty, no agent, no DCCTL_* or XDG_*."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(src),  # the snapshot, whatever dcctl is installed
    }


# ---------------------------------------------------------------------------------------------
# The tools


@dataclass(frozen=True)
class Case:
    """One (N, forks) cell: its directory, its hosts, and the files every tool shares."""

    fleet: Fleet
    src: Path
    n: int
    forks: int
    workdir: Path
    home: Path
    known_hosts: Path
    connect_timeout_s: float

    @property
    def env(self) -> dict[str, str]:
        return base_env(self.home, self.src)

    @property
    def sshds(self) -> list[Sshd]:
        return self.fleet.sshds_for(self.n)

    def host_entries(self) -> list[dict[str, Any]]:
        return [
            {"name": name, "host": address}
            for name, address in zip(self.fleet.names[: self.n], self.fleet.addresses, strict=False)
        ]

    def dcctl_inventory(self, path: Path, hosts: list[dict[str, Any]]) -> Path:
        lab = self.fleet.lab
        group_vars = {
            "user": lab.user,
            "port": self.fleet.port,
            "key_file": str(lab.client_key),
            "python": NODE_PYTHON,
        }
        return write_inventory(path, hosts, group_vars)

    def state_dir(self, label: str) -> Path:
        state = self.workdir / f"state-{label}"
        state.mkdir(mode=0o700)
        shutil.copy(self.known_hosts, state / "known_hosts")
        return state

    def dcctl_argv(self, inventory: Path, state: Path, *flags: str) -> list[str]:
        return [
            sys.executable, "-m", "dcctl", "-i", str(inventory), "--state-dir", str(state),
            "--forks", str(self.forks), "--connect-timeout", f"{self.connect_timeout_s:g}",
            *flags, "check",
        ]  # fmt: skip


def remote_command() -> tuple[str, str]:
    """(runtime digest, the shell command dcctl check sends to a lab host), built as dcctl does.

    Imported here, after snapshot_dcctl() put the snapshot first on sys.path.
    """
    from dcctl.evaluate.node import health_expect
    from dcctl.fleet.runtime import build_runtime, task_argv
    from dcctl.inventory.model import Host
    from dcctl.transport.base import remote_timeout_argv

    runtime = build_runtime()
    host = Host(name="node", address="node", python=NODE_PYTHON)
    # As dcctl/cli/check.py's params_for, for a host with no `expect`.
    params = {
        "scratch_dir": host.scratch_dir,
        "xid_window_h": health_expect(host.expect)["xid_window_h"],
        "dcgm_level": None,
    }
    argv = remote_timeout_argv(task_argv(host, runtime, TASK, params), TASK_TIMEOUT_S)
    return runtime.digest, shlex.join(argv)


def _read_run_document(state: Path) -> dict[str, Any]:
    documents = sorted(state.glob("runs/*/run.json"))
    if len(documents) != 1:
        raise RuntimeError(f"expected one run in {state}, found {len(documents)}")
    document: dict[str, Any] = json.loads(documents[0].read_text())
    return document


def _not_passed(document: dict[str, Any], limit: int = 10) -> list[dict[str, Any]]:
    """Why hosts did not pass (the first `limit`): error, or the ids of failed results."""
    return [
        {
            "name": host["name"],
            "status": host["status"],
            "error": host.get("error"),
            "failed": [r["id"] for r in host.get("results", []) if r["status"] in BAD_RESULTS],
        }
        for host in document["hosts"]
        if host["status"] != "passed"
    ][:limit]


def warm_up_dcctl(case: Case) -> None:
    """One untimed run on one host, so the node runtime is in the shared ~/.cache/dcctl."""
    inventory = case.dcctl_inventory(case.workdir / "warmup.yaml", case.host_entries()[:1])
    state = case.state_dir("warmup")
    proc = subprocess.run(
        case.dcctl_argv(inventory, state, "-q"),
        env=case.env,
        cwd=case.workdir,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"dcctl warm-up failed ({proc.returncode}):\n{proc.stderr}")


def run_dcctl(case: Case, workers: int) -> dict[str, Any]:
    inventory = case.dcctl_inventory(case.workdir / "inventory.yaml", case.host_entries())
    state = case.state_dir(f"dcctl-w{workers}")
    sample = measure(
        case.dcctl_argv(inventory, state, "-q", "--workers", str(workers)),
        env=case.env,
        cwd=case.workdir,
        stdout=case.workdir / f"dcctl-w{workers}.out",
        sshds=case.sshds,
    )
    document = _read_run_document(state)
    durations = sorted(host["duration_s"] for host in document["hosts"])
    return {
        **asdict(sample),
        "workers": workers,
        "passed": document["summary"]["passed"],
        "not_passed": _not_passed(document),
        "ms_per_host": round(sample.wall_s * 1000 / case.n, 1),
        "host_duration_median_s": round(statistics.median(durations), 3),
        "host_duration_max_s": round(durations[-1], 3),
    }


def _history_rows(state: Path) -> int:
    """Host rows the run left in the history db: proof that history was on."""
    import sqlite3

    path = state / "history.sqlite"
    if not path.exists():
        return 0
    with contextlib.closing(sqlite3.connect(path)) as db:
        return int(db.execute("SELECT count(*) FROM host_runs").fetchone()[0])


def run_history_ratio(case: Case, workers: int, runs: int) -> dict[str, Any]:
    """`dcctl check` with history on and off on the same hosts, alternating so both see the
    same machine; the medians' ratio is what recording history costs a run."""
    inventory = case.dcctl_inventory(case.workdir / "inventory.yaml", case.host_entries())
    walls: dict[str, list[float]] = {"off": [], "on": []}
    rows: list[int] = []
    for index in range(runs):
        for label, flags in (("off", ["--no-history"]), ("on", [])):
            state = case.state_dir(f"history-{label}-{index}")
            argv = case.dcctl_argv(inventory, state, "-q", "--workers", str(workers), *flags)
            sample = measure(argv, env=case.env, cwd=case.workdir,
                             stdout=case.workdir / f"history-{label}-{index}.out",
                             sshds=case.sshds)  # fmt: skip
            walls[label].append(round(sample.wall_s, 3))
            if label == "on":
                rows.append(_history_rows(state))
    off, on = statistics.median(walls["off"]), statistics.median(walls["on"])
    return {
        "runs": runs,
        "wall_s_off": walls["off"],
        "wall_s_on": walls["on"],
        "history_host_rows": rows,
        "ratio_on_off": round(on / off, 3),
    }


def run_openssh(case: Case, command: str) -> dict[str, Any]:
    hosts_file = case.workdir / "hosts.txt"
    hosts_file.write_text("".join(address + "\n" for address in case.fleet.addresses[: case.n]))
    lab = case.fleet.lab
    argv = [
        # -a: xargs reads hosts from the file and leaves its own stdin to each ssh.
        "xargs", "-a", str(hosts_file), "-P", str(case.forks), "-I", "@HOST@",
        # xargs gives up on the first command that exits 255 (any ssh failure, or a remote
        # command killed by a signal): the shell hides it; success is counted by payloads.
        "sh", "-c", 'ssh "$@"; exit 0', "ssh",
        "-F", "/dev/null", "-i", str(lab.client_key), "-o", "IdentitiesOnly=yes",
        "-o", f"UserKnownHostsFile={case.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
        "-o", f"ConnectTimeout={math.ceil(case.connect_timeout_s)}",
        "-p", str(case.fleet.port), f"{lab.user}@@HOST@", command,
    ]  # fmt: skip
    stdout = case.workdir / "openssh.out"
    # Held stdin, as dcctl holds the channel's: the node runtime's watchdog exits on EOF.
    sample = measure(
        argv, env=case.env, cwd=case.workdir, stdout=stdout, sshds=case.sshds, hold_stdin=True
    )
    return {
        **asdict(sample),
        "payloads": stdout.read_bytes().count(PAYLOAD_MARK),
        # The node runtime aborting at exit (stdin still open, watchdog thread blocked on it).
        "node_fatal_errors": stdout.with_suffix(".stderr").read_bytes().count(FATAL_MARK),
        "ms_per_host": round(sample.wall_s * 1000 / case.n, 1),
    }


def ensure_ansible() -> tuple[Path | None, str]:
    """(path of `ansible`, its version) from a venv under PERF_CACHE; (None, why) if impossible."""
    venv = PERF_CACHE / "ansible-venv"
    ansible = venv / "bin" / "ansible"
    if not ansible.exists():
        print(f"installing {ANSIBLE_REQUIREMENT} into {venv} ...", file=sys.stderr)
        steps = [
            [sys.executable, "-m", "venv", "--clear", str(venv)],
            [str(venv / "bin" / "pip"), "install", "-q", ANSIBLE_REQUIREMENT],
        ]
        for step in steps:
            proc = subprocess.run(step, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                return None, f"cannot install {ANSIBLE_REQUIREMENT}: {tail}"
    proc = subprocess.run([str(ansible), "--version"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return None, f"{ansible} --version failed: {proc.stderr.strip()}"
    return ansible, proc.stdout.splitlines()[0]


def _kill_processes_mentioning(marker: str) -> None:
    """SIGTERM our processes whose command line contains `marker` (ControlPersist masters)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if marker.encode() in (entry / "cmdline").read_bytes():
                os.kill(int(entry.name), signal.SIGTERM)


def run_ansible(case: Case, ansible: Path) -> dict[str, Any]:
    lab = case.fleet.lab
    ssh_args = (
        f"-F /dev/null -o IdentitiesOnly=yes -o UserKnownHostsFile={case.known_hosts} "
        "-o GlobalKnownHostsFile=/dev/null"
    )
    lines = ["[all]"]
    lines += [
        f"{name} ansible_host={address}"
        for name, address in zip(case.fleet.names[: case.n], case.fleet.addresses, strict=False)
    ]
    lines += [
        "[all:vars]",
        f"ansible_port={case.fleet.port}",
        f"ansible_user={lab.user}",
        f"ansible_ssh_private_key_file={lab.client_key}",
        f"ansible_python_interpreter={NODE_PYTHON}",
        f"ansible_ssh_common_args='{ssh_args}'",
    ]
    inventory = case.workdir / "inventory.ini"
    inventory.write_text("\n".join(lines) + "\n")
    control_dir = case.workdir / "ansible-cp"
    env = {
        **case.env,
        "ANSIBLE_HOME": str(case.workdir / "ansible-home"),
        "ANSIBLE_LOCAL_TEMP": str(case.workdir / "ansible-tmp"),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control_dir),
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_NOCOLOR": "1",
    }
    stdout = case.workdir / "ansible.out"
    sample = measure(
        [str(ansible), "all", "-i", str(inventory), "-m", "setup", "-f", str(case.forks), "-o"],
        env=env,
        cwd=case.workdir,  # no ansible.cfg there
        stdout=stdout,
        sshds=case.sshds,
        # ControlPersist masters outlive the run (60 s): end them so their sessions count.
        after_exit=lambda: _kill_processes_mentioning(f"{control_dir}/"),
    )
    text = stdout.read_text(errors="replace")
    return {
        **asdict(sample),
        "succeeded": len(re.findall(r"^\S+ \| SUCCESS", text, flags=re.MULTILINE)),
        "ms_per_host": round(sample.wall_s * 1000 / case.n, 1),
        "note": "client_cpu_s misses the ControlPersist masters (daemons); machine_cpu_s has them",
    }


def run_faulty(case: Case, percent: float, healthy_wall_s: float) -> dict[str, Any]:
    """dcctl --json check with `percent` of the hosts refusing connections or never answering."""
    hosts = case.host_entries()
    count = max(1, round(case.n * percent / 100))
    spread = {min(case.n - 1, int((j + 0.5) * case.n / count)): j for j in range(count)}
    expected_kind: dict[str, str] = {}
    listeners: list[SilentListener] = []
    try:
        for index, j in spread.items():
            address = hosts[index]["host"]
            if j % 2 == 0:
                hosts[index]["port"] = refused_endpoint(address)[1]
                expected_kind[hosts[index]["name"]] = "refused"
            else:
                listener = SilentListener(address)
                listeners.append(listener)
                hosts[index]["port"] = listener.port
                expected_kind[hosts[index]["name"]] = "silent"
        inventory = case.dcctl_inventory(case.workdir / "inventory-faulty.yaml", hosts)
        state = case.state_dir("faulty")
        stdout = case.workdir / "dcctl-faulty.json"
        sample = measure(
            case.dcctl_argv(inventory, state, "--json"),
            env=case.env,
            cwd=case.workdir,
            stdout=stdout,
            sshds=case.sshds,
        )
    finally:
        for listener in listeners:
            listener.close()
    document = json.loads(stdout.read_text())
    reported = {host["name"]: host for host in document["hosts"]}
    bad = [
        {"name": name, "made": how, **(reported.get(name, {}).get("error") or {"kind": None})}
        for name, how in expected_kind.items()
    ]
    good = {**document, "hosts": [h for h in document["hosts"] if h["name"] not in expected_kind]}
    return {
        **asdict(sample),
        "bad_hosts": len(bad),
        "every_bad_host_named": all(host["kind"] for host in bad),
        "error_kinds": {
            how: dict(Counter(str(host["kind"]) for host in bad if host["made"] == how))
            for how in ("refused", "silent")
        },
        "bad": bad,
        "good_passed": sum(1 for host in good["hosts"] if host["status"] == "passed"),
        "good_not_passed": _not_passed(good),
        "extra_wall_s": round(sample.wall_s - healthy_wall_s, 3),
        "within_one_connect_timeout": sample.wall_s <= healthy_wall_s + case.connect_timeout_s,
    }


def measure_node_shell(forks: int, runs: int = 10) -> dict[str, Any]:
    """What each exec on a lab node costs before the command starts: sshd runs the command
    under the user's login shell, and bash then sources ~/.bashrc (as for any sshd command).
    Shared by every tool; on this kind of machine it is a large part of the node CPU."""
    account = pwd.getpwuid(os.getuid())
    env = {"HOME": account.pw_dir, "PATH": "/usr/bin:/bin", "SSH_CLIENT": "127.0.0.1 22 22"}
    argv = [account.pw_shell, "-c", "true"]
    serial = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, env=env, stderr=subprocess.DEVNULL, check=True)
        serial.append(time.perf_counter() - started)
        if serial[-1] > SLOW_SHELL_S:
            raise RuntimeError(
                f"`{account.pw_shell} -c true` as sshd runs it took {serial[-1]:.0f}s: a stale "
                "lock in ~/.bashrc's startup (e.g. ~/.pyenv/shims/.pyenv-shim)? Fix it first."
            )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    # Racing shells may print pyenv's rehash complaints: not ours to show.
    procs = [subprocess.Popen(argv, env=env, stderr=subprocess.DEVNULL) for _ in range(forks)]
    for proc in procs:
        proc.wait()
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {
        "shell": account.pw_shell,
        "serial_median_s": round(statistics.median(serial), 4),
        "concurrent": forks,
        "concurrent_wall_s": round(wall, 3),
        "cpu_s_per_shell": round(cpu / forks, 4),
    }


# ---------------------------------------------------------------------------------------------
# Start-up


# The smallest Typer app: what Typer itself costs to show help, and to run a command (which
# loads more of Typer than `import typer` does).
TYPER_APP = """import typer
app = typer.Typer()
@app.command()
def hello(name: str = "world") -> None:
    print(name)
app()
"""


def measure_startup(home: Path, src: Path, runs: int) -> dict[str, Any]:
    env = base_env(home, src)
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -c 'import typer'": [sys.executable, "-c", "import typer"],
        "minimal typer app --help": [sys.executable, "-c", TYPER_APP, "--help"],
        "minimal typer app command": [sys.executable, "-c", TYPER_APP],
        "dcctl --help": [sys.executable, "-m", "dcctl", "--help"],
        "dcctl inventory hosts": [sys.executable, "-m", "dcctl", "inventory", "hosts"],
    }
    results: dict[str, Any] = {}
    for label, argv in commands.items():
        walls = []
        for _ in range(runs + 1):  # the first run warms caches and is dropped
            started = time.perf_counter()
            subprocess.run(argv, env=env, cwd=home, capture_output=True, check=True)
            walls.append(time.perf_counter() - started)
        trace = subprocess.run(
            [argv[0], "-X", "importtime", *argv[1:]],
            env=env,
            cwd=home,
            capture_output=True,
            text=True,
            check=True,
        )
        modules = {
            line.rsplit("|", 1)[-1].strip().split(".")[0]
            for line in trace.stderr.splitlines()
            if line.startswith("import time:") and not line.endswith("package")
        }
        results[label] = {
            "median_s": round(statistics.median(walls[1:]), 4),
            "min_s": round(min(walls[1:]), 4),
            "heavy_imports": sorted(modules & set(HEAVY_MODULES)),
        }
    median = {label: figures["median_s"] for label, figures in results.items()}
    typer_s = median["python -c 'import typer'"]
    return {
        "runs": runs,
        "note": "dcctl run as `python -m dcctl` from this checkout",
        "commands": results,
        "ratio_help_vs_typer": round(median["dcctl --help"] / typer_s, 2),
        "ratio_inventory_hosts_vs_typer": round(median["dcctl inventory hosts"] / typer_s, 2),
        "ratio_inventory_hosts_vs_typer_app_command": round(
            median["dcctl inventory hosts"] / median["minimal typer app command"], 2
        ),
    }


# ---------------------------------------------------------------------------------------------
# Machine, report, main


def _first_line(argv: Sequence[str]) -> str:
    with contextlib.suppress(OSError):
        proc = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=REPO)
        return (proc.stdout.strip() or proc.stderr.strip()).split("\n", 1)[0]
    return ""


def machine_info() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, flags=re.MULTILINE)
    meminfo = re.search(r"^MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text(), re.MULTILINE)
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model.group(1) if model else platform.processor(),
        "memory_gb": round(int(meminfo.group(1)) / 1024**2, 1) if meminfo else None,
        "kernel": platform.release(),
        "openssh": _first_line(["ssh", "-V"]),
        "paramiko": metadata.version("paramiko"),
        "python": platform.python_version(),
        "dcctl_commit": _first_line(["git", "rev-parse", "HEAD"]),
        "dcctl_tree_dirty": bool(_first_line(["git", "status", "--porcelain", "--", "dcctl"])),
    }


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ratio(numerator: float, denominator: float | None) -> float | None:
    return round(numerator / denominator, 3) if denominator else None


def print_report(report: dict[str, Any]) -> None:
    print()
    print(f"{'N':>5} {'forks':>5} {'dcctl s':>8} {'OpenSSH s':>9} {'Ansible s':>9} "
          f"{'dcctl/ssh':>9} {'dcctl/ans':>9} {'RSS MB':>7} {'ms/host':>8}")  # fmt: skip
    for row in report["fanout"]:
        dcctl, ssh, ansible = row["dcctl"], row["openssh"], row.get("ansible", {})
        print(
            f"{row['hosts']:>5} {row['forks']:>5} {dcctl['wall_s']:>8.2f} "
            f"{ssh['wall_s']:>9.2f} {_fmt(ansible.get('wall_s')):>9} "
            f"{_fmt(row['ratio_dcctl_openssh']):>9} {_fmt(row['ratio_dcctl_ansible']):>9} "
            f"{dcctl.get('tree_peak_rss_mb', dcctl['max_rss_mb']):>7.1f} "
            f"{dcctl['ms_per_host']:>8.1f}"
        )
    print()
    print(f"{'N':>5} {'forks':>5} {'tool':<10} {'wall s':>8} {'client CPU s':>12} "
          f"{'node CPU s':>10} {'machine CPU s':>13}  ok")  # fmt: skip
    for row in report["fanout"]:
        tools = {"dcctl": row["dcctl"], "openssh": row["openssh"], "ansible": row.get("ansible")}
        for workers, sample in list(row.get("dcctl_by_workers", {}).items())[1:]:
            tools[f"dcctl w={workers}"] = sample
        for tool, sample in tools.items():
            if not sample or "wall_s" not in sample:
                continue
            ok = sample.get("passed", sample.get("payloads", sample.get("succeeded")))
            print(
                f"{row['hosts']:>5} {row['forks']:>5} {tool:<10} {sample['wall_s']:>8.2f} "
                f"{sample['client_cpu_s']:>12.2f} {sample['node_cpu_s']:>10.2f} "
                f"{sample['machine_cpu_s']:>13.2f}  {ok}/{row['hosts']}"
            )
        if "skipped" in (row.get("ansible") or {}):
            print(
                f"{row['hosts']:>5} {row['forks']:>5} ansible  skipped: {row['ansible']['skipped']}"
            )
        faulty = row.get("faulty")
        if faulty:
            print(
                f"{row['hosts']:>5} {row['forks']:>5} faulty   {faulty['wall_s']:>8.2f}  "
                f"{faulty['bad_hosts']} bad hosts, {faulty['extra_wall_s']:+.2f} s vs healthy, "
                f"all named: {faulty['every_bad_host_named']}, kinds: {faulty['error_kinds']}, "
                f"good hosts passed: {faulty['good_passed']}/{row['hosts'] - faulty['bad_hosts']}"
            )
    shell = report.get("node_shell")
    if shell:
        print(
            f"\nnode login shell ({shell['shell']} -c true, as sshd runs it): "
            f"{shell['serial_median_s'] * 1000:.0f} ms alone, "
            f"{shell['cpu_s_per_shell'] * 1000:.0f} ms CPU each, "
            f"{shell['concurrent']} at once in {shell['concurrent_wall_s']:.2f} s"
        )
        if shell["serial_median_s"] > FAST_SHELL_S:
            print(
                "  slow: the user's ~/.bashrc does real work for every sshd command (pyenv init "
                "runs `pyenv rehash` under a global lock); at large N it bounds every tool and "
                "its lock contention grows with how fast a tool opens sessions"
            )
    startup = report.get("startup")
    if startup:
        print()
        for label, figures in startup["commands"].items():
            heavy = ", ".join(figures["heavy_imports"]) or "none"
            print(
                f"{label:<28} median {figures['median_s'] * 1000:7.1f} ms   heavy imports: {heavy}"
            )
        print(f"dcctl --help / import typer: {startup['ratio_help_vs_typer']:.2f}")
        print(
            f"dcctl inventory hosts / import typer: {startup['ratio_inventory_hosts_vs_typer']:.2f}"
            ", / minimal typer app command: "
            f"{startup['ratio_inventory_hosts_vs_typer_app_command']:.2f}"
        )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    def int_list(text: str) -> list[int]:
        values = sorted({int(part) for part in text.split(",") if part.strip()})
        if not values or values[0] < 1:
            raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
        return values

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument(
        "--hosts",
        type=int_list,
        default=[16, 64, 256, 1000],
        help="comma-separated host counts (default 16,64,256,1000)",
    )
    parser.add_argument(
        "--forks",
        type=int_list,
        default=[64],
        help="comma-separated --forks / xargs -P / ansible -f values (default 64)",
    )
    parser.add_argument(
        "--workers",
        type=lambda text: [int(part) for part in text.split(",")],
        default=[0],
        help="comma-separated dcctl --workers values, each run in turn; the first is compared "
        "with the other tools (default 0: dcctl's own choice)",
    )
    parser.add_argument("--out", type=Path, default=Path("perf.json"), help="JSON results file")
    parser.add_argument(
        "--faulty",
        type=float,
        default=0.0,
        metavar="PERCENT",
        help="also run dcctl with this %% of hosts refusing or silent (e.g. 5)",
    )
    parser.add_argument(
        "--connect-timeout",
        type=float,
        default=10.0,
        help="dcctl --connect-timeout and ssh ConnectTimeout (default 10)",
    )
    parser.add_argument(
        "--ansible-max-hosts",
        type=int,
        default=256,
        help="run Ansible only up to this many hosts (default 256)",
    )
    parser.add_argument("--no-ansible", action="store_true", help="skip Ansible entirely")
    parser.add_argument(
        "--history-runs",
        type=int,
        default=0,
        metavar="RUNS",
        help="also time dcctl with history on and with --no-history, alternating, RUNS times "
        "each, and report the ratio on / off (default 0: not measured)",
    )
    parser.add_argument(
        "--startup-runs",
        type=int,
        default=10,
        help="runs per start-up command; 0 skips start-up (default 10)",
    )
    parser.add_argument(
        "--keep-workdir",
        action="store_true",
        help="keep the lab, inventories and tool outputs (path printed)",
    )
    return parser.parse_args(argv)


@dataclass(frozen=True)
class Plan:
    """What every (N, forks) cell shares."""

    args: argparse.Namespace
    src: Path
    runtime_digest: str
    remote_command: str
    ansible: Path | None
    ansible_skip_reason: str


def run_cell(fleet: Fleet, plan: Plan, n: int, forks: int) -> dict[str, Any]:
    args = plan.args
    workdir = fleet.lab.root.parent / f"n{n}-f{forks}"
    workdir.mkdir()
    home = workdir / "home"
    (home / ".ssh").mkdir(mode=0o700, parents=True)
    case = Case(
        fleet=fleet,
        src=plan.src,
        n=n,
        forks=forks,
        workdir=workdir,
        home=home,
        known_hosts=fleet.known_hosts(workdir / "known_hosts", n),
        connect_timeout_s=args.connect_timeout,
    )
    warm_up_dcctl(case)
    row: dict[str, Any] = {
        "hosts": n,
        "forks": forks,
        "loadavg_1m_before": round(os.getloadavg()[0], 2),  # others' work on the machine skews it
    }
    by_workers = {}
    for workers in args.workers:
        label = f"--workers {workers}" if len(args.workers) > 1 else ""
        print(f"N={n} forks={forks}: dcctl {label}...", file=sys.stderr, flush=True)
        by_workers[str(workers)] = run_dcctl(case, workers)
    # The first --workers value is the one compared with the other tools.
    row["dcctl"] = by_workers[str(args.workers[0])]
    if len(by_workers) > 1:
        row["dcctl_by_workers"] = by_workers
    if args.history_runs > 0:
        print(f"N={n} forks={forks}: history on / off ...", file=sys.stderr, flush=True)
        row["history"] = run_history_ratio(case, args.workers[0], args.history_runs)
    print(f"N={n} forks={forks}: OpenSSH ...", file=sys.stderr, flush=True)
    row["openssh"] = run_openssh(case, plan.remote_command)
    if plan.ansible is None:
        row["ansible"] = {"skipped": plan.ansible_skip_reason}
    elif n > args.ansible_max_hosts:
        row["ansible"] = {"skipped": f"N > --ansible-max-hosts ({args.ansible_max_hosts})"}
    else:
        print(f"N={n} forks={forks}: Ansible ...", file=sys.stderr, flush=True)
        row["ansible"] = run_ansible(case, plan.ansible)
    row["ratio_dcctl_openssh"] = _ratio(row["dcctl"]["wall_s"], row["openssh"]["wall_s"])
    row["ratio_dcctl_ansible"] = _ratio(row["dcctl"]["wall_s"], row["ansible"].get("wall_s"))
    if args.faulty > 0:
        print(f"N={n} forks={forks}: dcctl, {args.faulty:g}% faulty ...", file=sys.stderr)
        row["faulty"] = run_faulty(case, args.faulty, row["dcctl"]["wall_s"])
    return row


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so every finally block (sshd cleanup) runs."""

    def handler(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    report: dict[str, Any] = {
        "schema": "dcctl.perf.fanout/1",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "argv": sys.argv,
        "machine": machine_info(),
        "settings": {
            "hosts": args.hosts,
            "forks": args.forks,
            "dcctl_workers": args.workers,
            "faulty_percent": args.faulty,
            "connect_timeout_s": args.connect_timeout,
            "node_python": NODE_PYTHON,
        },
        "fanout": [],
    }
    ansible: Path | None = None
    skip_reason = (
        "--no-ansible" if args.no_ansible else f"N > --ansible-max-hosts ({args.ansible_max_hosts})"
    )
    if not args.no_ansible and args.hosts[0] <= args.ansible_max_hosts:
        ansible, version_or_reason = ensure_ansible()
        if ansible is None:
            skip_reason = version_or_reason
            print(f"Ansible skipped: {skip_reason}", file=sys.stderr)
        else:
            report["machine"]["ansible"] = version_or_reason
    root = Path(tempfile.mkdtemp(prefix="dcctl-perf-"))
    with sigterm_as_exit():
        try:
            src = snapshot_dcctl(root)
            digest, command = remote_command()
            report["machine"]["dcctl_snapshot_digest"] = tree_digest(src / "dcctl")
            report["settings"] |= {"runtime_digest": digest, "remote_command": command}
            plan = Plan(args, src, digest, command, ansible, skip_reason)
            if args.startup_runs > 0:
                print("start-up ...", file=sys.stderr, flush=True)
                home = root / "startup-home"
                (home / ".ssh").mkdir(mode=0o700, parents=True)
                report["startup"] = measure_startup(home, src, args.startup_runs)
            report["node_shell"] = measure_node_shell(max(args.forks))
            with SshLab(root / "lab") as lab:
                started = time.perf_counter()
                fleet = start_fleet(lab, args.hosts[-1])
                report["lab"] = {
                    "sshds": len(fleet.sshds),
                    "port": fleet.port,
                    "first_address": fleet.addresses[0],
                    "start_s": round(time.perf_counter() - started, 2),
                }
                for n in args.hosts:
                    for forks in args.forks:
                        report["fanout"].append(run_cell(fleet, plan, n, forks))
                        args.out.write_text(json.dumps(report, indent=2) + "\n")
        finally:
            _kill_processes_mentioning(f"{root}/")
            if args.keep_workdir:
                print(f"work dir kept: {root}", file=sys.stderr)
            else:
                shutil.rmtree(root, ignore_errors=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_report(report)
    print(f"\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # every finally above has run: the lab is down
        print("interrupted; the lab was stopped", file=sys.stderr)
        sys.exit(130)
