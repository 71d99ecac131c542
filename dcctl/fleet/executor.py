"""Runs one node task on many hosts: bounded concurrency, per-host deadlines, stop signals.

A host's failure is a value in its outcome, never an exception that stops the other hosts.
Hosts run on a thread pool in this process, or, for SSH hosts past a few hundred, in worker
processes (pool.py); either way their outcomes land here, in the caller's thread.
"""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import resource
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from dcctl.fleet.frames import Landed, NodeProgress, StepDone, StepRequest, WorkerExited
from dcctl.fleet.outcome import FleetOptions, FleetRun, HostOutcome
from dcctl.fleet.progress import HostProgressCallback, ProgressGate
from dcctl.fleet.runtime import run_task
from dcctl.fleet.signals import StopRequest, stop_signals_set
from dcctl.fleet.transports import Transports
from dcctl.inventory.model import Host
from dcctl.transport.base import (
    POLL_INTERVAL_S,
    ErrorKind,
    HostError,
    ProgressCallback,
    Transport,
    holding,
)

if TYPE_CHECKING:
    from dcctl.fleet.pool import Inbox, WorkerPool

__all__ = ["Fleet", "FleetOptions", "FleetRun", "HostOutcome", "HostProgressCallback"]

# After a stop (Ctrl-C, SIGTERM, SIGHUP), hosts still running get this long to notice before
# they are written off.
INTERRUPT_GRACE_S = 4.0
# Hosts still connecting (TCP, SSH banner, key exchange, auth) hold no --forks slot, up to this
# many per slot: a silent host waits out its connect timeout beside the working ones, so a few
# dead hosts cost a run about one connect timeout, not one for each slot they would block.
CONNECTING_PER_FORK = 1
# Workers run the same grace, then need a moment to send what it saved.
WORKER_REPORT_S = 2.0
# Outcomes of hosts run in this process carry this in place of a worker's pid.
IN_PROCESS = 0

OutcomeCallback = Callable[[HostOutcome], None]
ParamsFor = Callable[[Host], dict[str, Any]]


def _raise_open_file_limit() -> None:
    """Each SSH host holds a socket and channel pipes for the whole run: a 1,000-host run
    needs more descriptors than the common soft limit of 1,024, and the hard limit allows it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65536 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


class _Step:
    """One run() call: which hosts are still owed an outcome, and who runs them."""

    def __init__(
        self,
        number: int,
        hosts: Sequence[Host],
        on_outcome: OutcomeCallback,
        stop: StopRequest,
        stopped_worker: Callable[[int], int | None],
        on_progress: HostProgressCallback | None = None,
    ) -> None:
        self.number = number
        self.waiting: dict[str, Host] = {host.name: host for host in hosts}
        self.by_worker: dict[int, list[str]] = {}
        # Workers that have not said the step is over: the run waits for them too, so that
        # the end-of-run EOF never reaches a worker still winding a step down.
        self.busy_workers: set[int] = set()
        # Hosts this process runs: after a stop, those never started are written off at once.
        self.queued: dict[str, Future[HostOutcome]] = {}
        self._on_outcome = on_outcome
        self._stop = stop
        # The stop signal a worker process died of, by pid; None if it died of anything else.
        self._stopped_worker = stopped_worker
        self._on_progress = on_progress
        # None when no one shows progress: then no host is asked for it.
        self.progress = ProgressGate() if on_progress is not None else None

    def land(self, outcome: HostOutcome) -> None:
        if self.waiting.pop(outcome.host.name, None) is not None:
            if self.progress is not None:
                self.progress.close(outcome.host.name)
            self._on_outcome(self._after_stop(outcome))

    def progress_of(self, host: Host) -> ProgressCallback | None:
        """What the host's transport calls with each progress line, from its own thread."""
        gate = self.progress
        if gate is None:
            return None
        return lambda progress: gate.offer(host.name, progress)

    def pass_progress_on(self) -> None:
        """In the thread that called Fleet.run(): the progress that is due."""
        if self.progress is None or self._on_progress is None:
            return
        for host_name, progress in self.progress.take_due():
            self._on_progress(host_name, progress)

    def _after_stop(self, outcome: HostOutcome) -> HostOutcome:
        """A task that broke after the run was stopped most likely broke of the stop: systemd
        sends SIGTERM to every process of its unit, node tasks on this machine included."""
        error = outcome.error
        if error is None or error.kind != "runtime" or not self._stop.is_set():
            return outcome
        message = f"interrupted by {self._stop.reason} while this host ran ({error.message})"
        return dataclasses.replace(outcome, error=HostError("interrupted", message))

    def write_off(self, names: Sequence[str], kind: ErrorKind, message: str) -> None:
        for name in names:
            host = self.waiting.get(name)
            if host is not None:
                self.land(HostOutcome(host, None, HostError(kind, message), 0.0))

    def interrupt(self, names: Sequence[str], when: str = "before this host ran") -> None:
        self.write_off(names, "interrupted", f"interrupted by {self._stop.reason} {when}")

    def receive(self, source: int, message: object) -> None:
        if isinstance(message, Landed) and message.step == self.number:
            self.land(message.outcome)
        elif isinstance(message, NodeProgress) and message.step == self.number:
            if self.progress is not None:
                self.progress.offer(message.host_name, message.progress)
        elif isinstance(message, StepDone) and message.step == self.number:
            self.busy_workers.discard(source)
            # Only an interrupted worker ends a step with hosts unreported.
            self.interrupt(self.by_worker.get(source, []))
        elif isinstance(message, WorkerExited):
            self.busy_workers.discard(source)
            names = self.by_worker.get(source, [])
            signum = self._stopped_worker(source)
            if self._stop.is_set():  # stopped before it could report, or before it could start
                self.interrupt(names, when="before this host finished")
            elif signum is not None:  # stopped alone: by a person, or by systemd first
                self.write_off(
                    names,
                    "interrupted",
                    "the controller's SSH worker process for this host was stopped by "
                    f"{signal.Signals(signum).name}",
                )
            else:
                self.write_off(
                    names,
                    "runtime",
                    f"the controller's SSH worker process for this host exited ({message.detail})",
                )


def _land_unusable(step: _Step, hosts: Sequence[Host]) -> list[Host]:
    """Report every host the inventory left unusable (nothing to contact: a value it needs is a
    template, or its connection one dcctl lacks); the others are the ones to run."""
    usable = []
    for host in hosts:
        if host.unusable is None:
            usable.append(host)
        else:
            step.land(HostOutcome(host, None, HostError("inventory", host.unusable), 0.0))
    return usable


class Fleet:
    """Holds one connection per host for the whole run, so later steps reuse it.

    A stop ends the run: after a stopped step, every later one reports its hosts interrupted
    without contacting them. Given a `stop`, the caller receives the stop signals and sets it
    (for the whole command, from before the first step to after the last output); without one,
    each step sets up the signals itself while it runs.
    """

    def __init__(self, options: FleetOptions, stop: StopRequest | None = None) -> None:
        _raise_open_file_limit()
        self._options = options
        self._stop = stop if stop is not None else StopRequest()
        self._own_signals = stop is None
        self._cancel = threading.Event()
        self._transports: dict[str, Transport] = {}
        self._lock = threading.Lock()
        self._factory = Transports(options)
        self._inbox: Inbox = queue.SimpleQueue()
        self._work_slots = threading.BoundedSemaphore(max(1, options.forks))
        self._pool: WorkerPool | None = None
        self._pool_decided = options.workers == 1
        self._steps = 0

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def run(
        self,
        hosts: Sequence[Host],
        task: str,
        params_for: ParamsFor,
        timeout_s: float,
        on_outcome: OutcomeCallback,
        on_progress: HostProgressCallback | None = None,
    ) -> FleetRun:
        """Run `task` on every host; `on_outcome` is called in this thread as each one lands.

        `on_progress`, if given, is called in this thread too, with the latest progress line
        of a host still running, at most every PROGRESS_INTERVAL_S per host (fleet/progress.py).
        """
        self._steps += 1
        step = _Step(self._steps, hosts, on_outcome, self._stop, self._stopped_worker, on_progress)
        if self._stop.is_set():  # stopped before this step, or an earlier one was: the run is over
            self._cancel.set()
            step.interrupt(list(step.waiting))
            return FleetRun(interrupted=True)
        threads = max(1, self._options.forks) * (1 + CONNECTING_PER_FORK)
        executor = ThreadPoolExecutor(max_workers=max(1, min(threads, len(hosts))))
        with stop_signals_set(self._stop) if self._own_signals else contextlib.nullcontext():
            hosts = _land_unusable(step, hosts)
            pool = self._worker_pool(hosts)
            for host in hosts:
                if pool is None or host.connection == "local":
                    future = executor.submit(
                        self._run_one,
                        host,
                        task,
                        params_for(host),
                        timeout_s,
                        step.progress_of(host),
                    )
                    future.add_done_callback(lambda f: self._landed_here(step.number, f))
                    step.queued[host.name] = future
            if pool is not None:
                self._send_to_workers(pool, step, hosts, task, params_for, timeout_s)
            while (step.waiting or step.busy_workers) and not self._stop.is_set():
                with contextlib.suppress(queue.Empty):
                    step.receive(*self._inbox.get(timeout=POLL_INTERVAL_S))
                step.pass_progress_on()
            if self._stop.is_set():
                self._interrupt(executor, step)
            executor.shutdown(wait=False, cancel_futures=True)
        # Also a stop that came as the last host landed: the user asked to stop.
        return FleetRun(interrupted=self._stop.is_set())

    def _stopped_worker(self, pid: int) -> int | None:
        return None if self._pool is None else self._pool.stop_signal_of(pid)

    def _landed_here(self, step: int, future: Future[HostOutcome]) -> None:
        if not future.cancelled():
            self._inbox.put((IN_PROCESS, Landed(step, future.result())))

    def _worker_pool(self, hosts: Sequence[Host]) -> WorkerPool | None:
        """Decided once, on the first step with SSH hosts: steps must find their hosts' connections
        where the first one left them."""
        if not self._pool_decided:
            ssh_hosts = sum(1 for host in hosts if host.connection != "local")
            if ssh_hosts:
                from dcctl.fleet.pool import WorkerPool, usable_cpus, worker_count

                self._pool_decided = True
                size = worker_count(self._options.workers, ssh_hosts, usable_cpus())
                if size > 1:
                    self._pool = WorkerPool(size, self._options, self._inbox)
        return self._pool

    def _send_to_workers(
        self,
        pool: WorkerPool,
        step: _Step,
        hosts: Sequence[Host],
        task: str,
        params_for: ParamsFor,
        timeout_s: float,
    ) -> None:
        ssh_hosts = {host.name: host for host in hosts if host.connection != "local"}
        for index, names in pool.deal(list(ssh_hosts)).items():
            worker = pool.worker(index)
            step.by_worker[worker.pid] = names
            step.busy_workers.add(worker.pid)
            request = StepRequest(
                step.number,
                task,
                [(ssh_hosts[name], params_for(ssh_hosts[name])) for name in names],
                timeout_s,
                progress=step.progress is not None,
            )
            # A worker that cannot be written to is dead, and its reader says so.
            worker.send(request)

    def _interrupt(self, executor: ThreadPoolExecutor, step: _Step) -> None:
        self._cancel.set()
        executor.shutdown(wait=False, cancel_futures=True)
        step.interrupt([name for name, future in step.queued.items() if future.cancelled()])
        if self._pool is not None:
            self._pool.interrupt(self._stop.signum or signal.SIGINT)
        with self._lock:
            transports = list(self._transports.values())
        for transport in transports:
            transport.close()
        grace_s = INTERRUPT_GRACE_S + (WORKER_REPORT_S if self._pool is not None else 0.0)
        give_up_at = time.monotonic() + grace_s
        while step.waiting and (left := give_up_at - time.monotonic()) > 0:
            try:
                step.receive(*self._inbox.get(timeout=left))
            except queue.Empty:
                break
        step.interrupt(list(step.waiting), when="before this host finished")

    def _run_one(
        self,
        host: Host,
        task: str,
        params: dict[str, Any],
        timeout_s: float,
        on_progress: ProgressCallback | None = None,
    ) -> HostOutcome:
        """Connect, then take a --forks slot and run the task. `timeout_s` bounds connecting
        and the task together, as before; the wait for a slot is not counted."""
        began = time.monotonic()
        queued: float | None = None
        queued_s = 0.0
        try:
            if self._cancel.is_set():
                raise HostError("interrupted", "interrupted before this host ran")
            transport = self._transport(host)
            transport.connect()
            queued = time.monotonic()
            with holding(self._work_slots, self._cancel):
                queued_s = time.monotonic() - queued
                # What connecting took comes off the task's time, so a host still takes at
                # most `timeout_s` in all (past it, run_task reports the deadline as passed).
                deadline = time.monotonic() + timeout_s - (queued - began)
                payload = run_task(transport, host, task, params, deadline, on_progress)
            return HostOutcome(host, payload, None, time.monotonic() - began - queued_s)
        except Exception as exc:
            if queued is not None and not queued_s:  # interrupted while waiting for a slot
                queued_s = time.monotonic() - queued
            error = (
                exc
                if isinstance(exc, HostError)  # one host's bug must not stop the fleet
                else HostError("runtime", f"unexpected {type(exc).__name__}: {exc}")
            )
            return HostOutcome(host, None, error, time.monotonic() - began - queued_s)

    def _transport(self, host: Host) -> Transport:
        with self._lock:
            transport = self._transports.get(host.name)
            if transport is None:
                transport = self._new_transport(host)
                self._transports[host.name] = transport
            return transport

    def _new_transport(self, host: Host) -> Transport:
        return self._factory.new(host, self._cancel)

    def close(self) -> None:
        with self._lock:
            for transport in self._transports.values():
                transport.close()
            self._transports.clear()
            self._factory.close()
        if self._pool is not None:
            self._pool.close()
