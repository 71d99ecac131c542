"""Runs one node task on many hosts: bounded concurrency, per-host deadlines, Ctrl-C handling.

A host's failure is a value in its outcome, never an exception that stops the other hosts.
"""

from __future__ import annotations

import resource
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dcctl.fleet.runtime import run_task
from dcctl.inventory.model import Host
from dcctl.transport.base import POLL_INTERVAL_S, HostError, Transport

if TYPE_CHECKING:
    from dcctl.transport.ssh import SshContext

# After Ctrl-C, hosts still running get this long to notice before they are written off.
INTERRUPT_GRACE_S = 4.0


@dataclass(frozen=True)
class FleetOptions:
    trusted_keys_file: Path
    forks: int = 64
    connect_timeout_s: float = 10.0
    accept_new_host_keys: bool = False


@dataclass(frozen=True)
class HostOutcome:
    host: Host
    payload: dict[str, Any] | None
    error: HostError | None
    duration_s: float


@dataclass
class FleetRun:
    outcomes: list[HostOutcome] = field(default_factory=list)
    interrupted: bool = False


OutcomeCallback = Callable[[HostOutcome], None]


def _raise_open_file_limit() -> None:
    """Each SSH host holds a socket and channel pipes for the whole run: a 1,000-host run
    needs more descriptors than the common soft limit of 1,024, and the hard limit allows it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65536 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


class Fleet:
    """Holds one connection per host for the whole run, so later steps reuse it."""

    def __init__(self, options: FleetOptions) -> None:
        _raise_open_file_limit()
        self._options = options
        self._cancel = threading.Event()
        self._transports: dict[str, Transport] = {}
        self._lock = threading.Lock()
        self._ssh_context: SshContext | None = None

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def run(
        self,
        hosts: Sequence[Host],
        task: str,
        params_for: Callable[[Host], dict[str, Any]],
        timeout_s: float,
        on_outcome: OutcomeCallback,
    ) -> FleetRun:
        """Run `task` on every host; `on_outcome` is called in this thread as each one lands."""
        fleet_run = FleetRun()
        executor = ThreadPoolExecutor(max_workers=max(1, self._options.forks))
        pending: dict[Future[HostOutcome], Host] = {
            executor.submit(self._run_one, host, task, params_for(host), timeout_s): host
            for host in hosts
        }
        try:
            while pending:
                done, _ = wait(pending, timeout=POLL_INTERVAL_S * 5, return_when=FIRST_COMPLETED)
                for future in done:
                    pending.pop(future)
                    outcome = future.result()
                    fleet_run.outcomes.append(outcome)
                    on_outcome(outcome)
        except KeyboardInterrupt:
            fleet_run.interrupted = True
            self._interrupt(executor, pending, fleet_run, on_outcome)
        finally:
            executor.shutdown(wait=False, cancel_futures=True)
        return fleet_run

    def _interrupt(
        self,
        executor: ThreadPoolExecutor,
        pending: dict[Future[HostOutcome], Host],
        fleet_run: FleetRun,
        on_outcome: OutcomeCallback,
    ) -> None:
        self._cancel.set()
        # A second Ctrl-C during the grace period must not lose what the first one saves.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        executor.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            transports = list(self._transports.values())
        for transport in transports:
            transport.close()
        done, _ = wait(pending, timeout=INTERRUPT_GRACE_S)
        for future, host in pending.items():
            if future in done and not future.cancelled():
                outcome = future.result()
            else:
                outcome = HostOutcome(
                    host, None, HostError("interrupted", "interrupted before this host ran"), 0.0
                )
            fleet_run.outcomes.append(outcome)
            on_outcome(outcome)

    def _run_one(
        self, host: Host, task: str, params: dict[str, Any], timeout_s: float
    ) -> HostOutcome:
        started = time.monotonic()
        try:
            if self._cancel.is_set():
                raise HostError("interrupted", "interrupted before this host ran")
            payload = run_task(
                self._transport(host), host, task, params, deadline=started + timeout_s
            )
            return HostOutcome(host, payload, None, time.monotonic() - started)
        except HostError as exc:
            return HostOutcome(host, None, exc, time.monotonic() - started)
        except Exception as exc:  # one host's bug must not stop the fleet
            error = HostError("runtime", f"unexpected {type(exc).__name__}: {exc}")
            return HostOutcome(host, None, error, time.monotonic() - started)

    def _transport(self, host: Host) -> Transport:
        with self._lock:
            transport = self._transports.get(host.name)
            if transport is None:
                transport = self._new_transport(host)
                self._transports[host.name] = transport
            return transport

    def _new_transport(self, host: Host) -> Transport:
        if host.connection == "local":
            from dcctl.transport.local import LocalTransport

            return LocalTransport(self._cancel)
        # Imported here so commands that never reach an SSH host never load paramiko.
        from dcctl.transport.ssh import SshContext, SshOptions, SshTransport

        if self._ssh_context is None:
            self._ssh_context = SshContext(
                SshOptions(
                    trusted_keys_file=self._options.trusted_keys_file,
                    accept_new_host_keys=self._options.accept_new_host_keys,
                    connect_timeout_s=self._options.connect_timeout_s,
                )
            )
        return SshTransport(host, self._ssh_context, self._cancel)

    def close(self) -> None:
        with self._lock:
            for transport in self._transports.values():
                transport.close()
            self._transports.clear()
            if self._ssh_context is not None:
                self._ssh_context.close()
