"""Jobs spanning nodes: dcctl's gang launch against the same torchrun job started by hand.

In one run, on loopback sshd "nodes" (127.0.0.41 upwards, one rank per node, gloo):

1. launch: for each N in --nodes, the wall time of
   `dcctl --json bench allreduce --scope cluster --nproc-per-node 1 --sizes 4K:4K` against the
   bare reference: `ssh` (OpenSSH, BatchMode, the lab key and known_hosts) to every node at
   once, each running `python -m torch.distributed.run --nnodes N --node-rank I
   --nproc-per-node 1 --master-addr FIRST --master-port PORT probe.py`, where probe.py does
   init_process_group("gloo"), one 4 KiB all_reduce and destroy_process_group. Also the node
   tasks' durations from dcctl's run.json. Prints dcctl's wall, bare wall, the difference
   (what dcctl adds, in seconds) and their ratio, medians over --rounds.
2. certify: `dcctl --json certify --quick` on the built-in localhost (no inventory), wall time
   of --certify-runs runs, their median, and whether each certified.
3. busbw: `dcctl bench allreduce --scope cluster --nproc-per-node 1 --sizes 64M:256M` on two
   nodes against allreduce_ratio.py's BARE_LOOP under torchrun over ssh on the same two nodes;
   busbw per size (dcctl's from cluster_results[0]["sizes"]), ratio of medians per size.

dcctl and bare alternate round by round in parts 1 and 3, so drift on a shared machine hits
both. The nodes' python is the interpreter running this script (it needs torch). HOME and the
state dir are in a temporary directory; ~/.ssh is never read.

    python tests/perf/gang_ratio.py                                     # everything
    python tests/perf/gang_ratio.py --nodes 2 --rounds 1 --certify-runs 1   # a smoke run

Writes every raw figure to tests/perf/results/gang-cpu.json (--out), rewritten after each
part. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE.parent / "integration"))  # sshlab
sys.path.insert(0, str(HERE))  # allreduce_ratio (it puts REPO on sys.path)

from allreduce_ratio import BARE_LOOP, machine, parse_size, summarize, with_bandwidth  # noqa: E402
from sshlab import (  # type: ignore[import-not-found, unused-ignore]  # noqa: E402
    Sshd,
    SshLab,
    lab_host,
    write_inventory,
    write_known_hosts,
)

from dcctl.node.bench.allreduce import DEFAULT_ITERATIONS, DEFAULT_WARMUP  # noqa: E402

DEFAULT_OUT = REPO / "tests" / "perf" / "results" / "gang-cpu.json"
# Tests use 127.0.0.2-4 and 127.0.0.21-26; fanout.py uses 127.10.x.y.
ADDRESSES = [f"127.0.0.{last}" for last in range(41, 49)]
PARTS = ("launch", "certify", "busbw")
LAUNCH_SIZES = "4K:4K"
LAUNCH_BYTES = 4096
CLUSTER_ID = "cluster.allreduce"
CERTIFY_ID = "certify"

# The bare side of part 1: join, one 4 KiB allreduce, leave.
LAUNCH_PROBE = """
import torch
import torch.distributed as dist

dist.init_process_group("gloo")
x = torch.ones(1024, dtype=torch.float32)
dist.all_reduce(x)
assert x[0].item() == dist.get_world_size()
dist.destroy_process_group()
"""


class CommandFailed(RuntimeError):
    pass


# ---------------------------------------------------------------------------------------------
# Running things


def _on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks: the lab is stopped


def free_port(address: str) -> int:
    """A port free on `address` right now (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        port: int = sock.getsockname()[1]
    return port


def isolated_env(home: Path) -> dict[str, str]:
    """This environment without the user's agent, inventory or state dir, HOME in the temp dir."""
    dropped = ("DCCTL_INVENTORY", "SSH_AUTH_SOCK", "XDG_STATE_HOME", "DCCTL_FAULT")
    env = {key: value for key, value in os.environ.items() if key not in dropped}
    existing = env.get("PYTHONPATH")
    env.update(HOME=str(home), COLUMNS="200",
               PYTHONPATH=str(REPO) + (os.pathsep + existing if existing else ""))  # fmt: skip
    return env


class Lab:
    """The sshd "nodes", their known_hosts, the temp HOME and what each tool needs to reach them."""

    def __init__(self, work: Path, count: int) -> None:
        self.work = work
        self.home = work / "home"
        self.home.mkdir()
        self.state = work / "state"
        self.state.mkdir()
        self.lab = SshLab(work / "lab")
        self.sshd: Sshd = self.lab.start_sshd(ADDRESSES[:count])
        # dcctl reads <state-dir>/known_hosts; ssh gets the same file.
        self.known_hosts = write_known_hosts(self.state / "known_hosts", [self.sshd])
        self.env = isolated_env(self.home)
        self.timeout_s = 900.0
        self._runs = 0

    def stop(self) -> None:
        self.lab.stop()

    def addresses(self, count: int) -> list[str]:
        return list(self.sshd.addresses[:count])

    # --- dcctl -------------------------------------------------------------------------------

    def dcctl(self, args: list[str], count: int | None) -> tuple[float, int, dict[str, Any]]:
        """`python -m dcctl [-i INV] --state-dir S --json ARGS`: wall s, exit code, run.json."""
        self._runs += 1
        argv = [sys.executable, "-m", "dcctl"]
        if count is not None:
            hosts = [
                lab_host(self.lab, self.sshd, f"node{i}", address, python=sys.executable)
                for i, address in enumerate(self.addresses(count), start=1)
            ]
            argv += ["-i", str(write_inventory(self.work / f"inv-{self._runs}.yaml", hosts))]
        argv += ["--state-dir", str(self.state), "--json", *args]
        began = time.monotonic()
        done = subprocess.run(argv, env=self.env, cwd=REPO, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=self.timeout_s)  # fmt: skip
        wall = time.monotonic() - began
        try:
            run_id = json.loads(done.stdout)["run_id"]
            document: dict[str, Any] = json.loads(
                (self.state / "runs" / run_id / "run.json").read_text()
            )
        except (ValueError, KeyError, OSError) as exc:
            raise CommandFailed(
                f"{shlex.join(argv[3:])} exited {done.returncode} without a run.json "
                f"({exc}):\n{done.stderr[-3000:]}"
            ) from None
        return wall, done.returncode, document

    # --- by hand -----------------------------------------------------------------------------

    def ssh_argv(self, address: str, command: list[str]) -> list[str]:
        return [
            "ssh", "-F", "/dev/null", "-i", str(self.lab.client_key), "-p", str(self.sshd.port),
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
            "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "StrictHostKeyChecking=yes",
            "-o", "ConnectTimeout=10", f"{self.lab.user}@{address}", shlex.join(command),
        ]  # fmt: skip

    def torchrun_by_hand(self, count: int, script: Path, script_args: list[str]) -> float:
        """The script under torchrun on the first `count` nodes, one ssh per node, all at once;
        static rendezvous on the first node. Wall s from the first ssh started to the last
        ended."""
        addresses = self.addresses(count)
        port = free_port(addresses[0])
        procs: list[subprocess.Popen[bytes]] = []
        logs = []
        began = time.monotonic()
        try:
            for rank, address in enumerate(addresses):
                command = [
                    sys.executable, "-m", "torch.distributed.run",
                    "--nnodes", str(count), "--node-rank", str(rank), "--nproc-per-node", "1",
                    "--master-addr", addresses[0], "--master-port", str(port),
                    str(script), *script_args,
                ]  # fmt: skip
                log = (self.work / f"bare-{self._runs}-{rank}.log").open("wb")
                logs.append(log)
                procs.append(subprocess.Popen(
                    self.ssh_argv(address, command), env=self.env, stdin=subprocess.DEVNULL,
                    stdout=log, stderr=subprocess.STDOUT,
                ))  # fmt: skip
            deadline = began + self.timeout_s
            for proc in procs:
                proc.wait(max(0.0, deadline - time.monotonic()))
            wall = time.monotonic() - began
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            for log in logs:
                log.close()
        self._runs += 1
        failed = [(rank, proc.returncode) for rank, proc in enumerate(procs) if proc.returncode]
        if failed:
            tails = [log.name for log in logs]
            detail = "\n".join(Path(name).read_text(errors="replace")[-1500:] for name in tails)
            raise CommandFailed(f"bare torchrun on {count} nodes: node ranks {failed}\n{detail}")
        return wall


def cluster_result(document: dict[str, Any], result_id: str) -> dict[str, Any]:
    found = [r for r in document["cluster_results"] if r["id"] == result_id]
    if len(found) != 1:
        raise CommandFailed(f"no {result_id} result in the run: {document['cluster_results']}")
    result: dict[str, Any] = found[0]
    return result


def run_seconds(document: dict[str, Any]) -> float:
    """finished_at - started_at of a run document (dcctl's own account of its run)."""
    from datetime import datetime

    started, finished = (datetime.fromisoformat(document[k].replace("Z", "+00:00"))
                         for k in ("started_at", "finished_at"))  # fmt: skip
    return (finished - started).total_seconds()


def _checked(code: int, document: dict[str, Any], result_id: str, what: str) -> dict[str, Any]:
    """The run's cluster result; a job that did not run (error) ends the measurement."""
    result = cluster_result(document, result_id)
    if result["status"] == "error" or code not in (0, 1):
        raise CommandFailed(f"{what} exited {code}: {result['status']}: {result['message']}")
    return result


# ---------------------------------------------------------------------------------------------
# 1. launch overhead


def launch_round(lab: Lab, count: int, probe: Path) -> dict[str, Any]:
    args = ["bench", "allreduce", "--scope", "cluster", "--nproc-per-node", "1",
            "--sizes", LAUNCH_SIZES]  # fmt: skip
    wall, code, document = lab.dcctl(args, count)
    result = _checked(code, document, CLUSTER_ID, "dcctl bench allreduce --scope cluster")
    bare = lab.torchrun_by_hand(count, probe, [])
    tasks = {host["name"]: host["duration_s"] for host in document["hosts"]}
    rows: list[dict[str, Any]] = result.get("sizes") or []
    row = next((r for r in rows if r.get("bytes") == LAUNCH_BYTES), {})
    iterations, time_us = row.get("iterations") or 0, row.get("time_us") or 0.0
    return {
        "dcctl_s": wall,
        "bare_s": bare,
        "dcctl_exit": code,
        "dcctl_status": result["status"],
        "dcctl_run_s": run_seconds(document),
        "node_task_s": tasks,
        "dcctl_iterations": iterations,
        "dcctl_time_us": time_us,
        # The worker's timed 4 KiB loop (at least min_time_s): work the bare probe does not do.
        "dcctl_timed_loop_s": iterations * time_us * 1e-6,
    }


def launch_summary(count: int, rounds: list[dict[str, Any]]) -> dict[str, Any]:
    dcctl = statistics.median(r["dcctl_s"] for r in rounds)
    bare = statistics.median(r["bare_s"] for r in rounds)
    slowest = statistics.median(max(r["node_task_s"].values()) for r in rounds)
    return {
        "nodes": count,
        "dcctl_s": dcctl,
        "bare_s": bare,
        "dcctl_adds_s": dcctl - bare,
        "ratio": dcctl / bare,
        "dcctl_run_s": statistics.median(r["dcctl_run_s"] for r in rounds),
        "slowest_node_task_s": slowest,
        "dcctl_timed_loop_s": statistics.median(r["dcctl_timed_loop_s"] for r in rounds),
    }


def measure_launch(lab: Lab, args: argparse.Namespace, document: dict[str, Any],
                   save: Any) -> None:  # fmt: skip
    probe = lab.work / "launch_probe.py"
    probe.write_text(LAUNCH_PROBE)
    document["launch"] = {"rows": [], "summary": []}
    for count in args.nodes:
        rounds: list[dict[str, Any]] = []
        load = os.getloadavg()[0]
        for number in range(args.rounds):
            measured = launch_round(lab, count, probe)
            rounds.append(measured)
            tasks = ", ".join(f"{s:.1f}" for s in measured["node_task_s"].values())
            print(f"launch N={count} round {number}: dcctl {measured['dcctl_s']:.2f} s "
                  f"(node tasks {tasks}), bare {measured['bare_s']:.2f} s", flush=True)  # fmt: skip
        document["launch"]["rows"].append({"nodes": count, "load_1m_before": load,
                                           "rounds": rounds})  # fmt: skip
        document["launch"]["summary"].append(launch_summary(count, rounds))
        save()


# ---------------------------------------------------------------------------------------------
# 2. certify --quick on localhost


def measure_certify(lab: Lab, args: argparse.Namespace, document: dict[str, Any],
                    save: Any) -> None:  # fmt: skip
    runs = []
    load = os.getloadavg()[0]
    for number in range(args.certify_runs):
        wall, code, run = lab.dcctl(["certify", "--quick"], None)
        verdict = cluster_result(run, CERTIFY_ID)
        certificate = verdict.get("certificate") or {}
        runs.append({
            "wall_s": wall,
            "exit": code,
            "status": verdict["status"],
            "observed": verdict.get("observed"),
            "certified": verdict.get("observed") == "certified",
            "reasons": certificate.get("reasons"),
            "message": verdict.get("message"),
            "ranks": len(certificate.get("ranks") or []),
            "dcctl_run_s": run_seconds(run),
            "node_task_s": {host["name"]: host["duration_s"] for host in run["hosts"]},
        })  # fmt: skip
        print(f"certify run {number}: {wall:.2f} s, exit {code}, {verdict.get('observed')}",
              flush=True)  # fmt: skip
    document["certify"] = {
        "load_1m_before": load,
        "runs": runs,
        "median_s": statistics.median(r["wall_s"] for r in runs),
        "certified": sum(r["certified"] for r in runs),
    }
    save()


# ---------------------------------------------------------------------------------------------
# 3. cluster busbw on two nodes


def sweep(text: str) -> list[int]:
    """`MIN:MAX[:FACTOR]` as dcctl's --sizes takes it, every size of the sweep."""
    parts = text.split(":")
    low, high = parse_size(parts[0]), parse_size(parts[1])
    factor = int(parts[2]) if len(parts) > 2 else 2
    sizes = [low]
    while sizes[-1] * factor <= high:
        sizes.append(sizes[-1] * factor)
    return sizes


def dcctl_busbw(lab: Lab, sizes_text: str, sizes: list[int]) -> tuple[float, list[dict[str, Any]]]:
    args = ["bench", "allreduce", "--scope", "cluster", "--nproc-per-node", "1",
            "--sizes", sizes_text]  # fmt: skip
    wall, code, document = lab.dcctl(args, 2)
    result = _checked(code, document, CLUSTER_ID, "dcctl bench allreduce --scope cluster")
    rows = [dict(row) for row in result["sizes"] if row["bytes"] in sizes]
    if sorted(row["bytes"] for row in rows) != sizes:
        raise CommandFailed(f"dcctl measured {[r['bytes'] for r in result['sizes']]}, not {sizes}")
    for row in rows:  # dcctl's figure kept; the script's own from the same time beside it
        row["dcctl_busbw_gbs"] = row["busbw_gbs"]
        with_bandwidth([row], 2)
    return wall, rows


def bare_busbw(lab: Lab, script: Path, sizes: list[int]) -> tuple[float, list[dict[str, Any]]]:
    out = lab.work / "bare-busbw.json"
    out.unlink(missing_ok=True)
    params = {"device": "cpu", "sizes": sizes, "warmup": DEFAULT_WARMUP,
              "iterations": DEFAULT_ITERATIONS, "out": str(out)}  # fmt: skip
    wall = lab.torchrun_by_hand(2, script, [json.dumps(params)])
    rows: list[dict[str, Any]] = json.loads(out.read_text())
    return wall, with_bandwidth(rows, 2)


def measure_busbw(lab: Lab, args: argparse.Namespace, document: dict[str, Any],
                  save: Any) -> None:  # fmt: skip
    sizes = sweep(args.sizes)
    script = lab.work / "bare_allreduce.py"
    script.write_text(BARE_LOOP)
    runs: list[dict[str, Any]] = []
    document["busbw"] = {"sizes": sizes, "load_1m_before": os.getloadavg()[0], "runs": runs}
    for number in range(args.rounds):
        for tool in ("dcctl", "bare"):
            if tool == "dcctl":
                wall, rows = dcctl_busbw(lab, args.sizes, sizes)
            else:
                wall, rows = bare_busbw(lab, script, sizes)
            runs.append({"tool": tool, "round": number, "wall_s": wall, "sizes": rows})
            shown = ", ".join(f"{r['busbw_gbs']:.3f}" for r in rows)
            print(f"busbw round {number} {tool:5} GB/s: {shown}", flush=True)
            save()
    document["busbw"]["summary"] = summarize(runs, sizes)
    save()


# ---------------------------------------------------------------------------------------------
# Output


def print_tables(document: dict[str, Any]) -> None:
    if document.get("launch"):
        print(
            f"\nlaunch (cluster allreduce 4 KiB, 1 rank per node, medians of "
            f"{document['settings']['rounds']} rounds)"
        )
        print(
            f"{'nodes':>5} {'dcctl s':>8} {'bare s':>7} {'diff s':>7} {'ratio':>6} "
            f"{'node task s':>11} {'4K loop s':>9}"
        )
        for row in document["launch"]["summary"]:
            print(
                f"{row['nodes']:>5} {row['dcctl_s']:>8.2f} {row['bare_s']:>7.2f} "
                f"{row['dcctl_adds_s']:>7.2f} {row['ratio']:>6.2f} "
                f"{row['slowest_node_task_s']:>11.2f} {row['dcctl_timed_loop_s']:>9.2f}"
            )
    if document.get("certify"):
        certify = document["certify"]
        verdicts = ", ".join(str(r["observed"]) for r in certify["runs"])
        print(
            f"\ncertify --quick on localhost: median {certify['median_s']:.2f} s over "
            f"{len(certify['runs'])} runs; {certify['certified']} certified ({verdicts})"
        )
        for run in certify["runs"]:
            if not run["certified"]:
                print(f"  not certified: {run['reasons'] or run['message']}")
    if document.get("busbw", {}).get("summary"):
        print("\ncluster busbw, 2 nodes x 1 rank (gloo)")
        print(f"{'size':>10} {'dcctl GB/s':>11} {'bare GB/s':>10} {'ratio':>6} {'best ratio':>10}")
        for row in document["busbw"]["summary"]:
            size = f"{row['bytes'] // 1024**2} MiB"
            print(
                f"{size:>10} {row['dcctl_busbw_gbs']:>11.3f} {row['bare_busbw_gbs']:>10.3f} "
                f"{row['ratio']:>6.3f} {row['best_ratio']:>10.3f}"
            )


def openssh_version() -> str:
    done = subprocess.run(["ssh", "-V"], capture_output=True, text=True, check=False)
    return (done.stderr or done.stdout).strip()


@contextlib.contextmanager
def workdir(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="dcctl-gang-perf-"))
    try:
        yield path
    finally:
        if keep:
            print(f"work dir kept: {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", default="2,4,8", help="node counts for the launch part (<= 8)")
    parser.add_argument("--rounds", type=int, default=3, help="dcctl and bare runs each")
    parser.add_argument("--certify-runs", type=int, default=3)
    parser.add_argument("--sizes", default="64M:256M", help="busbw part, as dcctl's --sizes")
    parser.add_argument("--parts", default=",".join(PARTS), help="which of " + ",".join(PARTS))
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per command")
    parser.add_argument("--keep-workdir", action="store_true")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    args.nodes = [int(n) for n in args.nodes.split(",")]
    parts = [p.strip() for p in args.parts.split(",")]
    if unknown := set(parts) - set(PARTS):
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    if not all(2 <= n <= len(ADDRESSES) for n in args.nodes):
        parser.error(f"--nodes must each be from 2 to {len(ADDRESSES)}")
    signal.signal(signal.SIGTERM, _on_sigterm)
    used = ADDRESSES[: max([*args.nodes, 2])]

    document: dict[str, Any] = {
        "schema": "dcctl.perf.gang/1",
        "machine": {**machine(), "openssh": openssh_version()},
        "settings": {**vars(args), "out": str(args.out), "parts": parts, "addresses": used},
    }

    def save() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(document, indent=2) + "\n")

    with workdir(args.keep_workdir) as work:
        lab = Lab(work, len(used))
        lab.timeout_s = args.timeout
        try:
            # Untimed: ships dcctl's node runtime into the nodes' HOME and warms the page cache
            # for torch, so no timed round pays a first run.
            probe = work / "warmup_probe.py"
            probe.write_text(LAUNCH_PROBE)
            lab.dcctl(["bench", "allreduce", "--scope", "cluster", "--nproc-per-node", "1",
                       "--sizes", LAUNCH_SIZES], 2)  # fmt: skip
            lab.torchrun_by_hand(2, probe, [])
            print("warm-up done", flush=True)
            measures = {"launch": measure_launch, "certify": measure_certify,
                        "busbw": measure_busbw}  # fmt: skip
            for part in parts:
                measures[part](lab, args, document, save)
        except (CommandFailed, subprocess.TimeoutExpired) as exc:
            save()
            sys.exit(f"gang_ratio: {exc}")
        finally:
            lab.stop()
    save()
    print_tables(document)
    print(f"\nraw figures: {args.out}")


if __name__ == "__main__":
    main()
