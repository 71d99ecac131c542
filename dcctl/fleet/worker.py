"""An SSH worker process: runs the steps the controller sends for its share of the hosts.

Frames in on stdin, frames out on stdout (see frames.py). A SIGINT from the controller is its
Ctrl-C, and a SIGTERM or SIGHUP (systemd stopping the whole unit) is the same: the step in
flight is interrupted as the controller's own would be, what it saved is reported, and later
steps are written off unrun. EOF on stdin means the run is over, or the controller is gone:
either way, close the connections and exit.
"""

from __future__ import annotations

import queue
import signal
import sys
import threading
from dataclasses import replace
from typing import IO

from dcctl.fleet.executor import Fleet
from dcctl.fleet.frames import (
    Landed,
    NodeProgress,
    StepDone,
    StepRequest,
    WorkerInit,
    encode_frame,
    read_frame,
    write_all,
)
from dcctl.fleet.signals import STOP_SIGNALS, StopRequest, handle_stop_signals
from dcctl.transport.base import HostError

Replies = queue.SimpleQueue[object]


def main() -> None:
    stop = StopRequest()
    # Whatever this process inherited (a controller started in the background by a shell has
    # SIGINT ignored), the controller's SIGINT must stop a step here.
    handle_stop_signals(stop, keep_ignored=False)
    # Blocked since the worker started (pool.py): one that came meanwhile lands now.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    frames_in, frames_out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may write into the frame stream
    init = read_frame(frames_in)
    if not isinstance(init, WorkerInit):
        return
    requests: queue.SimpleQueue[StepRequest | None] = queue.SimpleQueue()
    replies: Replies = queue.SimpleQueue()
    threading.Thread(target=_read_requests, args=(frames_in, requests, stop), daemon=True).start()
    # Replies go out from their own thread, so the step's thread never waits on the pipe.
    writer = threading.Thread(target=_write_replies, args=(frames_out, replies), daemon=True)
    writer.start()
    try:
        with Fleet(init.options, stop) as fleet:
            while (request := requests.get()) is not None:
                replies.put(StepDone(request.step, _run_step(fleet, request, replies)))
    finally:
        replies.put(None)
        writer.join()


def _run_step(fleet: Fleet, request: StepRequest, replies: Replies) -> bool:
    """True if the step was interrupted (its unreported hosts are the controller's to write off)."""
    params = {host.name: host_params for host, host_params in request.hosts}
    run = fleet.run(
        [host for host, _ in request.hosts],
        request.task,
        lambda host: params[host.name],
        request.timeout_s,
        lambda outcome: replies.put(Landed(request.step, outcome)),
        # Throttled here already, so the frames carry no more than the controller shows.
        on_progress=(
            (lambda name, progress: replies.put(NodeProgress(request.step, name, progress)))
            if request.progress
            else None
        ),
    )
    return run.interrupted


def _read_requests(
    stream: IO[bytes], requests: queue.SimpleQueue[StepRequest | None], stop: StopRequest
) -> None:
    try:
        while isinstance(message := read_frame(stream), StepRequest):
            requests.put(message)
    except Exception:
        pass  # a stream that stops making sense ends like EOF
    # At the end of a run the controller has heard every step out before it closes the stream,
    # so this stops nothing. Mid-step the controller is gone: its end hung up, so the step is
    # cut short as a SIGHUP would cut it, and the connections close and the node tasks end.
    stop.request(signal.SIGHUP)
    requests.put(None)


def _write_replies(stream: IO[bytes], replies: Replies) -> None:
    while (reply := replies.get()) is not None:
        try:
            frame = encode_frame(reply)
        except Exception as exc:
            if not isinstance(reply, Landed):
                continue  # StepDone is two numbers, NodeProgress was JSON: not worth an answer
            # The host still gets an answer, or the controller would wait for it forever.
            error = HostError("runtime", f"result could not be sent to the controller: {exc}")
            frame = encode_frame(
                Landed(reply.step, replace(reply.outcome, payload=None, error=error))
            )
        try:
            write_all(stream, frame)
        except OSError:  # the controller is gone; keep draining so nothing blocks
            continue
