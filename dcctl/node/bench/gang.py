"""Node tasks of a gang job: one torchrun job spanning the nodes of a group.

`gang_preflight` answers, without importing torch (seconds per node), what the launch needs:
whether torch is installed for the host's python, how many ranks this node runs (one per GPU,
or CPU_RANKS on a node without GPUs), and on the group's first node the rendezvous port(s) it
can listen on. `gang` then starts this node's part of the job:

    python -m torch.distributed.run --nnodes N --node-rank I --nproc-per-node P \\
        --master-addr ADDR --master-port PORT --rdzv-conf timeout=J \\
        -m dcctl.node.bench.<worker>_worker '<json params>'

and returns the documents its own ranks wrote. torchrun's static rendezvous (the default when
--master-addr is given) waits J seconds for every node; the controller enforces the same join
timeout on its side and ends the group when any node fails.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import time
from typing import Any

from dcctl.node.bench.launch import run_workers
from dcctl.node.bench.rank import GANG_JOB_ENV
from dcctl.node.facts import TaskParamsError
from dcctl.node.probes import software
from dcctl.node.probes.gpu import collect_gpu

# gloo processes per node on a node without GPUs.
CPU_RANKS = 2
# Candidate rendezvous ports the first node offers: the controller takes one no other group of
# the same pass took (groups may share a machine, and the store listens on every address).
PORT_CANDIDATES = 8
# The workers a gang runs: the name of each one's stdlib module (params, WORKER_MODULE).
WORKERS = ("allreduce", "certify")
_GPU_IDENTITY = ("index", "name", "uuid", "pci_bus_id", "serial", "memory_total_mib")
TORCH_INSTALL_URL = "https://pytorch.org/get-started/locally/"


def _worker(name: str) -> Any:
    import importlib

    return importlib.import_module(f"dcctl.node.bench.{name}")


def _free_ports(count: int) -> list[int]:
    """Ports the kernel hands out now, all held at once so they differ."""
    held = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(sock)
            sock.bind(("", 0))
        return [sock.getsockname()[1] for sock in held]
    finally:
        for sock in held:
            sock.close()


def _port_error(port: int) -> str | None:
    """Why torchrun's store could not listen on `port` here, or None."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("", port))
    except OSError as exc:
        return f"rendezvous port {port} cannot be used on this node: {exc.strerror or exc}"
    finally:
        sock.close()
    return None


def _int(raw: dict[str, Any], name: str, least: int, default: Any = None) -> Any:
    value = raw.get(name, default)
    if value is None and default is None and name not in raw:
        return None
    if type(value) is not int or value < least:
        raise TaskParamsError(f"{name} must be an integer >= {least}, got {value!r}")
    return value


def preflight_task(raw: dict[str, Any]) -> dict[str, Any]:
    """`{"leader": bool, "port": int|null, "nproc": int|null}` -> what this node can run."""
    port = raw.get("port")
    nproc = raw.get("nproc")
    if port is not None:
        _int(raw, "port", 1)
    if nproc is not None:
        _int(raw, "nproc", 1)
    gpu = collect_gpu()
    gpus = gpu.get("gpus") or []
    torch = software.collect_torch()
    python = sys.executable
    answer: dict[str, Any] = {
        "python": python,
        "torch": torch["version"] if torch else None,
        "device": "cuda" if gpus else "cpu",
        "gpus": [{key: g.get(key) for key in _GPU_IDENTITY} for g in gpus],
        "driver": gpu.get("driver"),
        "cuda": gpu.get("cuda"),
        "nproc": nproc or (len(gpus) or CPU_RANKS),
        "ports": [],
        # Not "error": that key in a payload means the runtime itself broke.
        "problem": None,
    }
    answer["problem"] = _preflight_error(answer, gpus, port, raw.get("leader") is True)
    if raw.get("leader") is True and answer["problem"] is None:
        answer["ports"] = [port] if port is not None else _free_ports(PORT_CANDIDATES)
    return answer


def _preflight_error(
    answer: dict[str, Any], gpus: list[Any], port: int | None, leader: bool
) -> str | None:
    if answer["torch"] is None:
        build = "a CUDA build matching the driver" if gpus else "the CPU build"
        return (
            f"torch is not installed for {answer['python']}; install it: {answer['python']} "
            f"-m pip install torch ({build}, see {TORCH_INSTALL_URL})"
        )
    if gpus and answer["nproc"] > len(gpus):
        return f"{answer['nproc']} ranks per node asked for, but this node has {len(gpus)} GPUs"
    if leader and port is not None:
        return _port_error(port)
    return None


def gang_argv(python: str, raw: dict[str, Any], worker_params: dict[str, Any]) -> list[str]:
    import json

    module = _worker(raw["worker"]).WORKER_MODULE
    return [
        python, "-m", "torch.distributed.run",
        "--nnodes", str(raw["nnodes"]), "--node-rank", str(raw["node_rank"]),
        "--nproc-per-node", str(raw["nproc"]),
        "--master-addr", raw["master_addr"], "--master-port", str(raw["master_port"]),
        "--rdzv-conf", f"timeout={int(raw['join_timeout_s'])}",
        "--monitor-interval", "0.2",
        "-m", module, json.dumps(worker_params, sort_keys=True, separators=(",", ":")),
    ]  # fmt: skip


def _gang_params(raw: dict[str, Any]) -> dict[str, Any]:
    worker = raw.get("worker")
    if worker not in WORKERS:
        raise TaskParamsError(f"worker must be one of {', '.join(sorted(WORKERS))}, got {worker!r}")
    nnodes = _int(raw, "nnodes", 1, 0)
    node_rank = _int(raw, "node_rank", 0, -1)
    if node_rank >= nnodes:
        raise TaskParamsError(f"node_rank {node_rank} is not below nnodes {nnodes}")
    _int(raw, "nproc", 1, 0)
    _int(raw, "master_port", 1, 0)
    for name in ("join_timeout_s", "budget_s"):
        value = raw.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise TaskParamsError(f"{name} must be a positive number of seconds, got {value!r}")
    if not isinstance(raw.get("master_addr"), str) or not raw["master_addr"]:
        raise TaskParamsError(f"master_addr must be an address, got {raw.get('master_addr')!r}")
    env = raw.setdefault("env", {})
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise TaskParamsError("env must map names to strings")
    params = raw.get("params")
    if not isinstance(params, dict):
        raise TaskParamsError("params must be a JSON object")
    module = _worker(worker)
    try:
        module.worker_params({**params, "out_dir": "-"})
    except module.BadParams as exc:
        raise TaskParamsError(f"{worker}: {exc}") from None
    return raw


def _node_ranks(raw: dict[str, Any]) -> list[int]:
    first = raw["node_rank"] * raw["nproc"]
    return list(range(first, first + raw["nproc"]))


def gang_task(raw: dict[str, Any]) -> dict[str, Any]:
    """Start this node's part of the job and wait for it (see the module docstring)."""
    params = _gang_params(raw)
    deadline = time.monotonic() + float(params["budget_s"])
    python = sys.executable

    def command(full: dict[str, Any]) -> list[str]:
        return gang_argv(python, params, full)

    gpu: dict[str, Any] = {}
    with contextlib.suppress(Exception):  # identity only: the ranks name their GPUs themselves
        gpu = collect_gpu()
    env = {**params["env"], GANG_JOB_ENV: "1"}
    run = run_workers(command, params["params"], deadline, env=env)
    what = f"the {params['worker']} workers here (node rank {params['node_rank']})"
    return {
        "worker": params["worker"],
        "node_rank": params["node_rank"],
        "nproc": params["nproc"],
        "python": python,
        "hostname": socket.gethostname(),
        "gpus": [{key: g.get(key) for key in _GPU_IDENTITY} for g in gpu.get("gpus") or []],
        "driver": gpu.get("driver"),
        "cuda": gpu.get("cuda"),
        "ranks": run.rank_docs,
        # Not "error": that key in a payload means the runtime itself broke.
        "launch_error": run.error(_node_ranks(params), what),
    }
