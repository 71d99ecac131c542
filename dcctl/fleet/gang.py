"""Gang jobs: one torchrun job across every node of a group, all or nothing.

This is a second fleet path beside the per-host one (executor.py), not a variant of it. The
per-host path bounds how many hosts run at once (`--forks`) and deals hosts to worker
processes; a gang cannot wait for slots, since its ranks block in their first collective until
every node has joined, so a group larger than the free slots, or split across workers, would
deadlock. Here every node of every group has its own thread in this process, outside the
slots, for the whole job; a thread mostly waits on its node's channel, so this costs a thread
and a connection per node, and handshakes are the only CPU work (see MEASUREMENTS.md for their
cost). Groups of one pass (pairs: N/2 groups) run at once.

A group runs in two waves:
1. prepare: connect to every node and run `gang_preflight` (no torch import: is torch
   installed, how many ranks, and on the first node a free rendezvous port). Any node that
   cannot start (unreachable, auth, no torch, port taken) fails the group at once, naming it,
   and no node of that group is launched.
2. launch: `gang` on every node in one wave, torchrun with a static rendezvous on the first
   node's fabric_address. The group ends early, and every remote process of it is killed, when
   a node's task ends with an error while the others run, when a node has not said its ranks
   joined within the join timeout, at the outer deadline, or on a stop signal. Killing is
   closing the node's channel (SSH) or its process group (local): the node-side watchdog then
   kills the task's process group, and each rank dies with its torchrun (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dcctl.evaluate.gang_input import GangRun, NodeRun
from dcctl.fleet.outcome import FleetOptions
from dcctl.fleet.progress import HostProgressCallback, ProgressGate
from dcctl.fleet.runtime import run_task, shorten
from dcctl.fleet.signals import StopRequest
from dcctl.fleet.transports import Transports
from dcctl.inventory.model import Host
from dcctl.transport.base import POLL_INTERVAL_S, ErrorKind, HostError, Transport

# Connecting and the preflight (no torch import): seconds beyond the connect timeout.
PREPARE_S = 60.0
# Beyond the workers' budget on the node: starting the task, reading NVML, returning the result.
TASK_OVERHEAD_S = 30.0
# After an abort, the nodes' threads get this long to return before they are written off.
ABORT_GRACE_S = 10.0
# After one node's ranks all failed, the others get this long to end by themselves (their
# torchrun notices a dead rank within its monitor interval) before they are named and killed.
SETTLE_S = 5.0

ParamsFor = Callable[[str], dict[str, Any]]
# Nodes whose thread has ended, as they end.
Done = queue.SimpleQueue["_Node"]
HostParams = Callable[[Host], dict[str, Any]]


@dataclass(frozen=True)
class GangSpec:
    """One job: which worker, its parameters and limits. `params_for(device)` gives the
    worker's parameters once the preflight has said whether the group runs on GPUs or CPUs;
    `host_params(host)` adds to them per node (a fault aimed at one host)."""

    worker: str
    params_for: ParamsFor
    join_timeout_s: float
    budget_s: float
    nproc_per_node: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    port: int | None = None
    host_params: HostParams | None = None


@dataclass
class _Node:
    host: Host
    node_rank: int
    transport: Transport | None = None
    answer: dict[str, Any] | None = None
    payload: dict[str, Any] | None = None
    error: HostError | None = None
    joined: bool = False
    done: bool = False
    duration_s: float = 0.0


@dataclass
class _Group:
    nodes: list[_Node]
    cancel: threading.Event = field(default_factory=threading.Event)
    cause: str | None = None
    failed_hosts: tuple[str, ...] = ()
    nproc: int = 0
    device: str = "cpu"
    port: int = 0
    launched_at: float = 0.0
    # When a node ended with its ranks' errors while others still ran, and what they said.
    troubled_at: float | None = None
    trouble: str = ""
    began: float = field(default_factory=time.monotonic)
    aborted_at: float | None = None

    @property
    def running(self) -> bool:
        return not all(node.done for node in self.nodes)

    def fail(self, cause: str, hosts: Sequence[str]) -> None:
        """The first cause wins: later failures are most likely its consequences."""
        if self.cause is None:
            self.cause = cause
            self.failed_hosts = tuple(hosts)


def _describe(error: HostError) -> str:
    return f"{error.kind}: {error.message}"


class GangRunner:
    """Runs gang jobs for one command; `stop` ends every group at once."""

    def __init__(self, options: FleetOptions, stop: StopRequest) -> None:
        self._options = options
        self._stop = stop
        self._transports = Transports(options)

    def __enter__(self) -> GangRunner:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._transports.close()

    @property
    def interrupted(self) -> bool:
        return self._stop.is_set()

    def run(
        self,
        groups: Sequence[Sequence[Host]],
        spec: GangSpec,
        on_progress: HostProgressCallback | None = None,
    ) -> list[GangRun]:
        """Every group's job, all at once; one GangRun per group, in order."""
        gangs = [_Group([_Node(host, rank) for rank, host in enumerate(hosts)]) for hosts in groups]
        gate = ProgressGate() if on_progress is not None else None
        # This call's own: a thread written off after an abort must not land in a later call.
        done: Done = queue.SimpleQueue()
        try:
            self._prepare(gangs, spec, done)
            self._launch(gangs, spec, done, gate, on_progress)
        finally:
            for gang in gangs:
                self._close(gang)
        return [self._result(gang) for gang in gangs]

    # --- wave 1: connect and preflight ---------------------------------------------------

    def _prepare(self, gangs: list[_Group], spec: GangSpec, done: Done) -> None:
        for gang in gangs:
            unusable = [node for node in gang.nodes if node.host.unusable is not None]
            for node in unusable:
                node.error = HostError("inventory", node.host.unusable or "")
                node.done = True
            if unusable:
                gang.fail(self._cannot_start(unusable), [n.host.name for n in unusable])
        ready = [gang for gang in gangs if gang.cause is None]
        self._wave(ready, lambda gang, node: self._preflight(gang, node, spec), done)
        for gang in ready:
            self._check_prepared(gang)
        self._choose_ports([gang for gang in ready if gang.cause is None])

    def _preflight(self, gang: _Group, node: _Node, spec: GangSpec) -> None:
        leader = node.node_rank == 0
        params = {"leader": leader, "port": spec.port if leader else None,
                  "nproc": spec.nproc_per_node}  # fmt: skip
        deadline = time.monotonic() + self._options.connect_timeout_s + PREPARE_S
        node.transport = self._transports.new(node.host, gang.cancel)
        node.transport.connect()
        answer = run_task(node.transport, node.host, "gang_preflight", params, deadline)
        if answer.get("problem"):
            raise HostError("runtime", str(answer["problem"]))
        node.answer = answer

    def _check_prepared(self, gang: _Group) -> None:
        failed = [node for node in gang.nodes if node.error is not None]
        if failed:
            gang.fail(self._cannot_start(failed), [node.host.name for node in failed])
            return
        answers = [node.answer or {} for node in gang.nodes]
        devices = {answer.get("device") for answer in answers}
        counts = {answer.get("nproc") for answer in answers}
        if len(devices) > 1:
            odd = self._odd_ones(gang, "device")
            gang.fail(f"nodes differ in device (GPUs on some, none on {', '.join(odd)})", odd)
        elif len(counts) > 1:
            odd = self._odd_ones(gang, "nproc")
            first = gang.nodes[0]
            gang.fail(
                f"nodes differ in ranks per node ({first.host.name}: {answers[0].get('nproc')}; "
                f"{', '.join(odd)} differ): set --nproc-per-node",
                odd,
            )
        else:
            gang.device = str(answers[0].get("device"))
            gang.nproc = int(answers[0].get("nproc") or 1)

    @staticmethod
    def _odd_ones(gang: _Group, key: str) -> list[str]:
        first = (gang.nodes[0].answer or {}).get(key)
        return [node.host.name for node in gang.nodes if (node.answer or {}).get(key) != first]

    @staticmethod
    def _cannot_start(nodes: Sequence[_Node]) -> str:
        named = "; ".join(
            f"{node.host.name}: {_describe(node.error)}" for node in nodes if node.error is not None
        )
        return f"could not start on {named}"

    def _choose_ports(self, gangs: list[_Group]) -> None:
        """Groups of one pass may share a machine (loopback nodes, several groups per host):
        each takes a port no other group of the pass took."""
        taken: set[int] = set()
        for gang in gangs:
            offered = (gang.nodes[0].answer or {}).get("ports") or []
            free = [port for port in offered if isinstance(port, int) and port not in taken]
            if not free:
                leader = gang.nodes[0].host.name
                gang.fail(f"no free rendezvous port on {leader}", [leader])
                continue
            gang.port = free[0]
            taken.add(gang.port)

    # --- wave 2: the job -----------------------------------------------------------------

    def _launch(
        self,
        gangs: list[_Group],
        spec: GangSpec,
        done: Done,
        gate: ProgressGate | None,
        on_progress: HostProgressCallback | None,
    ) -> None:
        ready = [gang for gang in gangs if gang.cause is None]
        for gang in ready:
            gang.launched_at = time.monotonic()
            for node in gang.nodes:
                node.done = False
                threading.Thread(
                    target=self._in_thread,
                    args=(node, lambda g=gang, n=node: self._job(g, n, spec, gate), done),
                    name=f"gang-{node.host.name}",
                    daemon=True,
                ).start()
        while any(gang.running for gang in ready):
            with contextlib.suppress(queue.Empty):
                finished = done.get(timeout=POLL_INTERVAL_S)
                finished.done = True
                self._after_node(self._gang_of(ready, finished), finished)
            self._watch(ready, spec)
            if gate is not None and on_progress is not None:
                for host_name, progress in gate.take_due():
                    on_progress(host_name, progress)

    @staticmethod
    def _gang_of(gangs: list[_Group], node: _Node) -> _Group:
        return next(gang for gang in gangs if node in gang.nodes)

    def _job(self, gang: _Group, node: _Node, spec: GangSpec, gate: ProgressGate | None) -> None:
        assert node.transport is not None
        first = gang.nodes[0]
        params = {**spec.params_for(gang.device),
                  **(spec.host_params(node.host) if spec.host_params else {})}  # fmt: skip
        task = {
            "worker": spec.worker,
            "nnodes": len(gang.nodes),
            "node_rank": node.node_rank,
            "nproc": gang.nproc,
            "master_addr": first.host.rendezvous_address,
            "master_port": gang.port,
            "join_timeout_s": spec.join_timeout_s,
            "budget_s": spec.budget_s,
            "env": spec.env,
            "params": params,
        }
        deadline = gang.launched_at + spec.budget_s + TASK_OVERHEAD_S

        def heard(progress: dict[str, Any]) -> None:
            if progress.get("phase") == "joined":
                node.joined = True
            elif gate is not None:
                gate.offer(node.host.name, progress)

        node.payload = run_task(node.transport, node.host, "gang", task, deadline, heard)
        if node.payload.get("launch_error"):
            node.error = HostError("runtime", str(node.payload["launch_error"]))

    def _in_thread(self, node: _Node, work: Callable[[], None], done: Done) -> None:
        began = time.monotonic()
        try:
            work()
        except HostError as exc:
            node.error = exc
        except Exception as exc:  # one node's bug must end its group, not the controller
            node.error = HostError("runtime", f"unexpected {type(exc).__name__}: {exc}")
        finally:
            node.duration_s += time.monotonic() - began
            done.put(node)

    def _after_node(self, gang: _Group, node: _Node) -> None:
        """A node whose task failed, or whose ranks did not all write a result (one died),
        ends the group. A node whose ranks all wrote an error is most often a victim: its
        ranks lost a peer. The nodes still running then get SETTLE_S to end by themselves,
        so that the one whose rank died is the one named."""
        if node.error is not None:
            gang.fail(f"{node.host.name} failed: {_describe(node.error)}", [node.host.name])
            if gang.running:
                self._abort(gang)
        elif gang.running and gang.troubled_at is None and _rank_error(node) is not None:
            gang.troubled_at = time.monotonic()
            gang.trouble = f"ranks on {node.host.name} failed ({_rank_error(node)})"

    def _watch(self, gangs: list[_Group], spec: GangSpec) -> None:
        now = time.monotonic()
        for gang in gangs:
            if not gang.running:
                continue
            if self._stop.is_set():
                gang.fail(f"interrupted by {self._stop.reason}", [])
                self._abort(gang)
            elif now > gang.launched_at + spec.join_timeout_s and gang.cause is None:
                late = [node.host.name for node in gang.nodes if not node.joined and not node.done]
                if late and not all(node.joined for node in gang.nodes):
                    gang.fail(
                        f"did not join the job within {spec.join_timeout_s:g} s: "
                        f"{', '.join(late)} (rendezvous {gang.nodes[0].host.rendezvous_address}:"
                        f"{gang.port}; is it reachable from every node?)",
                        late,
                    )
                    self._abort(gang)
            elif gang.troubled_at is not None and now > gang.troubled_at + SETTLE_S:
                late = _still_running(gang)
                gang.fail(f"{', '.join(late)} still ran {SETTLE_S:g} s after {gang.trouble}", late)
                self._abort(gang)
            elif now > gang.launched_at + spec.budget_s + TASK_OVERHEAD_S and gang.cause is None:
                late = _still_running(gang)
                gang.fail(f"did not finish within {spec.budget_s:g} s: {', '.join(late)}", late)
                self._abort(gang)
            if gang.aborted_at is not None and now > gang.aborted_at + ABORT_GRACE_S:
                for node in gang.nodes:  # written off: their channels are closed already
                    node.done = True

    def _abort(self, gang: _Group) -> None:
        """Every remote process of the group is killed: the transports close their channels."""
        if gang.aborted_at is not None:
            return
        gang.aborted_at = time.monotonic()
        gang.cancel.set()
        threading.Thread(target=self._close, args=(gang,), daemon=True).start()

    def _close(self, gang: _Group) -> None:
        for node in gang.nodes:
            if node.transport is not None:
                with contextlib.suppress(Exception):  # closing what may be half-open already
                    node.transport.close()

    # --- shared ---------------------------------------------------------------------------

    def _wave(self, gangs: list[_Group], work: Callable[[_Group, _Node], None], done: Done) -> None:
        """Run `work` for every node of `gangs` at once and wait for all, or for a stop."""
        nodes = [(gang, node) for gang in gangs for node in gang.nodes]
        for gang, node in nodes:
            node.done = False
            threading.Thread(
                target=self._in_thread,
                args=(node, lambda g=gang, n=node: work(g, n), done),
                name=f"gang-prepare-{node.host.name}",
                daemon=True,
            ).start()
        pending = len(nodes)
        while pending:
            with contextlib.suppress(queue.Empty):
                done.get(timeout=POLL_INTERVAL_S).done = True
                pending -= 1
            if self._stop.is_set():
                for gang in gangs:
                    gang.fail(f"interrupted by {self._stop.reason}", [])
                    self._abort(gang)
                break

    def _result(self, gang: _Group) -> GangRun:
        nodes = []
        for node in gang.nodes:
            error = node.error
            cut_short = (error is None and node.payload is None) or (
                error is not None and error.kind == "interrupted"
            )
            if gang.cause is not None and node.host.name not in gang.failed_hosts and cut_short:
                # Stopped or never started because of another node: say so.
                verb = "not run" if gang.launched_at == 0.0 else "stopped"
                kind: ErrorKind = "interrupted" if self._stop.is_set() else "group"
                error = HostError(kind, f"{verb}: the group {gang.cause}")
            nodes.append(NodeRun(node.host, node.node_rank, node.payload, error, node.duration_s))
        return GangRun(
            tuple(nodes),
            gang.nproc,
            error=gang.cause,
            failed_hosts=gang.failed_hosts,
            duration_s=time.monotonic() - gang.began,
        )


def _still_running(gang: _Group) -> list[str]:
    return [node.host.name for node in gang.nodes if not node.done]


def _rank_error(node: _Node) -> str | None:
    """The first error a rank of this node wrote, if any did."""
    ranks = (node.payload or {}).get("ranks") or []
    errors = [doc["error"] for doc in ranks if isinstance(doc, dict) and doc.get("error")]
    return shorten(str(errors[0]), 120) if errors else None
