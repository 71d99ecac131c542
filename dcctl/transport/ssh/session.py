"""One command on an open connection: exec, its input, its output, and its deadline."""

from __future__ import annotations

import shlex
import threading
import time
from collections.abc import Sequence

import paramiko

from dcctl.transport.base import (
    KILL_GRACE_S,
    KILLED_EXIT_CODE,
    POLL_INTERVAL_S,
    STDERR_KEPT_BYTES,
    STDOUT_KEPT_BYTES,
    TIMEOUT_EXIT_CODE,
    CommandResult,
    HostError,
    ProgressCallback,
    TailBuffer,
    check_cancelled,
    progress_lines,
    remote_timeout_argv,
)
from dcctl.transport.ssh.sockets import wait_ready

READ_CHUNK = 65536
# How long past the deadline the controller waits on a channel: the node's own `timeout`
# (which kills KILL_GRACE_S after its TERM) has had its chance by then.
GIVE_UP_AFTER_S = KILL_GRACE_S + 1.0
# How a command ends when the node's `timeout` stopped it: TERM sufficed, or KILL was needed.
NODE_TIMEOUT_EXIT_CODES = (TIMEOUT_EXIT_CODE, KILLED_EXIT_CODE)


def run_command(
    connection: paramiko.Transport,
    argv: Sequence[str],
    deadline: float,
    stdin: bytes | None,
    display: str,
    open_timeout_s: float,
    cancel: threading.Event | None,
    on_progress: ProgressCallback | None = None,
) -> CommandResult:
    # Measured after connecting, so the node's own kill never outlasts our deadline.
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise HostError("timeout", f"{display}: deadline passed before {argv[0]} could start")
    channel = _open_session(connection, display, open_timeout_s)
    try:
        channel.settimeout(remaining)
        channel.exec_command(shlex.join(remote_timeout_argv(argv, remaining)))
        _send_input(channel, stdin, display)
        return _collect(channel, deadline, display, cancel, on_progress)
    finally:
        channel.close()


def _open_session(
    connection: paramiko.Transport, display: str, timeout_s: float
) -> paramiko.Channel:
    try:
        return connection.open_session(timeout=timeout_s)
    except paramiko.ChannelException as exc:
        raise HostError(
            "unreachable", f"{display} refused a session ({exc.text}; sshd's MaxSessions?)"
        ) from exc
    except paramiko.SSHException as exc:
        if not connection.is_active():
            raise  # the connection died: reported as lost by the caller
        # Still connected, yet paramiko's own timer gave up on the answer.
        raise HostError(
            "timeout",
            f"{display}: no answer to opening a session within {timeout_s:g} s "
            "(host frozen or network down)",
        ) from exc


def _send_input(channel: paramiko.Channel, stdin: bytes | None, display: str) -> None:
    # Without input stdin stays open: the node runtime exits when it sees EOF there, so a
    # controller that vanishes (Ctrl-C, crash) takes its remote work with it.
    if stdin is None:
        return
    try:
        channel.sendall(stdin)
        channel.shutdown_write()
    except TimeoutError as exc:
        raise HostError("timeout", f"{display}: sending input took past the deadline") from exc


class _Output:
    """What a command printed (the tails kept) and when it last printed anything."""

    def __init__(self, on_progress: ProgressCallback | None = None) -> None:
        self.stdout = TailBuffer(STDOUT_KEPT_BYTES)
        self.stderr = TailBuffer(STDERR_KEPT_BYTES)
        self.last_data_at: float | None = None
        self._lines = progress_lines(on_progress)

    def drain(self, channel: paramiko.Channel) -> bool:
        """Read at most one chunk of each stream: a task that prints without pause must not
        keep the caller from its deadline and Ctrl-C checks between reads."""
        drained = False
        if channel.recv_ready():
            chunk = channel.recv(READ_CHUNK)
            self.stdout.add(chunk)
            if self._lines is not None:
                self._lines.feed(chunk)
            drained = True
        if channel.recv_stderr_ready():
            self.stderr.add(channel.recv_stderr(READ_CHUNK))
            drained = True
        if drained:
            self.last_data_at = time.monotonic()
        return drained


def _collect(
    channel: paramiko.Channel,
    deadline: float,
    display: str,
    cancel: threading.Event | None,
    on_progress: ProgressCallback | None = None,
) -> CommandResult:
    output = _Output(on_progress)
    give_up_at = deadline + GIVE_UP_AFTER_S
    while True:
        # Every pass, printing or not: a task that never stops printing still meets its
        # deadline and Ctrl-C.
        check_cancelled(cancel)
        printed = output.drain(channel)
        if _finished(channel):
            break
        if not printed and _transport_gone(channel):  # what arrived before it went is read
            raise _lost(display, cancel)
        if time.monotonic() > give_up_at:
            # Exited, but a process it left behind holds its output open: the exit counts.
            if channel.exit_status_ready():
                break
            raise _abandoned(display, output, deadline)
        if not printed:
            wait_ready(channel, POLL_INTERVAL_S)
    # Ctrl-C closes the connection under us, which reads like an ordinary channel close.
    check_cancelled(cancel)
    # exit-signal (killed on the node) leaves paramiko's exit_status at -1.
    exit_code = channel.exit_status
    if exit_code == -1 and _transport_gone(channel):
        raise _lost(display, cancel)
    return CommandResult(
        exit_code=exit_code,
        stdout=output.stdout.text(),
        stderr=output.stderr.text(),
        timed_out=exit_code in NODE_TIMEOUT_EXIT_CODES and time.monotonic() >= deadline,
    )


def _finished(channel: paramiko.Channel) -> bool:
    """Exited and all its output read: EOF seen (or the channel closed) and nothing buffered."""
    if not (channel.exit_status_ready() and (channel.eof_received or channel.closed)):
        return False
    return not (channel.recv_ready() or channel.recv_stderr_ready())


def _abandoned(display: str, output: _Output, deadline: float) -> HostError:
    """The controller stops waiting; nothing was killed by it, and the message says so."""
    if output.last_data_at is not None and output.last_data_at > deadline:
        return HostError(
            "timeout",
            f"{display}: the task was still printing {GIVE_UP_AFTER_S:g} s past its deadline; "
            "its node-side timeout did not end it (a process that left its process group?)",
        )
    return HostError(
        "timeout",
        f"{display}: no answer from the host in the {GIVE_UP_AFTER_S:g} s past the task's "
        "deadline (host frozen or network down); the task's own timeout should stop it on "
        "the node",
    )


def _transport_gone(channel: paramiko.Channel) -> bool:
    transport = channel.get_transport()
    return transport is None or not transport.is_active()


def _lost(display: str, cancel: threading.Event | None) -> HostError:
    # A stop sets `cancel`, then closes the connection: one that closed after the last look at
    # `cancel` is the stop's doing, not a lost host.
    check_cancelled(cancel)
    return HostError("unreachable", f"connection to {display} lost mid-command")
