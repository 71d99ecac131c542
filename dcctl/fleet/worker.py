"""An SSH worker process: runs the steps the controller sends for its share of the hosts.

Frames in on stdin, frames out on stdout (see frames.py). A SIGINT from the controller is its
Ctrl-C: the step in flight is interrupted as the controller's own would be. EOF on stdin means
the run is over, or the controller is gone: either way, close the connections and exit.
"""

from __future__ import annotations

import _thread
import queue
import signal
import sys
import threading
from dataclasses import replace
from typing import IO

from dcctl.fleet.executor import Fleet
from dcctl.fleet.frames import Landed, StepDone, StepRequest, WorkerInit, encode_frame, read_frame
from dcctl.transport.base import HostError

Replies = queue.SimpleQueue[object]


def main() -> None:
    # Inherited SIG_IGN (a controller started in the background by a shell) would make the
    # controller's SIGINT, and the stop on EOF, do nothing here.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    frames_in, frames_out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may write into the frame stream
    init = read_frame(frames_in)
    if not isinstance(init, WorkerInit):
        return
    requests: queue.SimpleQueue[StepRequest | None] = queue.SimpleQueue()
    replies: Replies = queue.SimpleQueue()
    in_step, closed = threading.Event(), threading.Event()
    threading.Thread(
        target=_read_requests, args=(frames_in, requests, in_step, closed), daemon=True
    ).start()
    # Replies go out from their own thread: a KeyboardInterrupt, which lands only in the main
    # thread, can then never cut a frame in half.
    writer = threading.Thread(target=_write_replies, args=(frames_out, replies), daemon=True)
    writer.start()
    try:
        with Fleet(init.options) as fleet:
            _serve(fleet, requests, replies, in_step, closed)
    except KeyboardInterrupt:  # a late stop after the last step: nothing is left to save
        pass
    finally:
        replies.put(None)
        writer.join()


def _serve(
    fleet: Fleet,
    requests: queue.SimpleQueue[StepRequest | None],
    replies: Replies,
    in_step: threading.Event,
    closed: threading.Event,
) -> None:
    stopped = False
    while True:
        try:
            request = requests.get()
        except KeyboardInterrupt:
            # Between steps, or before this step's request was read: the controller stopped
            # the run, so no later step may start.
            stopped = True
            continue
        if request is None:
            return
        in_step.set()
        try:
            # Set, then looked at: the reader sets `closed`, then looks at `in_step`, so an EOF
            # is seen by one side or the other.
            if closed.is_set():
                return
            interrupted = stopped or _run_step(fleet, request, replies)
        finally:
            in_step.clear()
        replies.put(StepDone(request.step, interrupted))


def _run_step(fleet: Fleet, request: StepRequest, replies: Replies) -> bool:
    params = {host.name: host_params for host, host_params in request.hosts}
    try:
        run = fleet.run(
            [host for host, _ in request.hosts],
            request.task,
            lambda host: params[host.name],
            request.timeout_s,
            lambda outcome: replies.put(Landed(request.step, outcome)),
        )
    except KeyboardInterrupt:  # landed before the fleet could catch it: the controller fills in
        return True
    return run.interrupted


def _read_requests(
    stream: IO[bytes],
    requests: queue.SimpleQueue[StepRequest | None],
    in_step: threading.Event,
    closed: threading.Event,
) -> None:
    try:
        while isinstance(message := read_frame(stream), StepRequest):
            requests.put(message)
    except Exception:
        pass  # a stream that stops making sense ends like EOF
    closed.set()
    requests.put(None)
    if in_step.is_set():
        # The controller is gone mid-step (at a normal end it waits for every StepDone first):
        # cut the step short as a Ctrl-C would, so the connections close and the node tasks
        # see EOF and end.
        _thread.interrupt_main()


def _write_replies(stream: IO[bytes], replies: Replies) -> None:
    while (reply := replies.get()) is not None:
        try:
            frame = encode_frame(reply)
        except Exception as exc:
            if not isinstance(reply, Landed):
                continue  # StepDone is two numbers: only a result can fail to pickle
            # The host still gets an answer, or the controller would wait for it forever.
            error = HostError("runtime", f"result could not be sent to the controller: {exc}")
            frame = encode_frame(
                Landed(reply.step, replace(reply.outcome, payload=None, error=error))
            )
        try:
            stream.write(frame)
            stream.flush()
        except OSError:  # the controller is gone; keep draining so nothing blocks
            continue
