"""Ships the node runtime (dcctl.node, named by content hash) and runs tasks.

Checking the cache and running the task is one exec; the upload is a second exec, only on a miss,
because every exec on a node pays for a login-shell start.

The runtime travels as a zip and is unpacked and byte-compiled on the node, by the node's own
interpreter: every later task then loads cached bytecode instead of compiling the sources out
of a zip, which was most of the task's CPU time on the node. It runs with `-S`: it carries all
it imports, and the node's site-packages (.pth hooks, editable installs) cost tens of
milliseconds per exec and could print into the payload stream.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import signal
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from dcctl.inventory.model import Host
from dcctl.node.payload import (
    EXIT_NO_PYTHON,
    EXIT_PYTHON_TOO_OLD,
    EXIT_RUNTIME_MISSING,
    MIN_PYTHON,
    BadPayload,
    PayloadCutOff,
    read_payload,
)
from dcctl.node.probes.software import NODE_CACHE_ENV
from dcctl.node.watchdog import WATCHDOG_ENV
from dcctl.transport.base import (
    STDOUT_KEPT_BYTES,
    CommandResult,
    HostError,
    ProgressCallback,
    Transport,
)

MISSING_MARK = "<dcctl-runtime-missing>"
NO_PYTHON_MARK = "<dcctl-no-python>"
TOO_OLD_MARK = "<dcctl-python-too-old>"
INSTALLED_MARK = "<dcctl-runtime-installed>"

# Fixed shell text; everything that comes from an inventory is passed as a positional argument.
_CACHE_DIR = '"${XDG_CACHE_HOME:-$HOME/.cache}/dcctl"'
RUN_SCRIPT = (
    "py=$2\n"
    f'command -v "$py" >/dev/null 2>&1 || {{ echo "{NO_PYTHON_MARK}"; exit {EXIT_NO_PYTHON}; }}\n'
    f"c={_CACHE_DIR}\n"
    'r="$c/runtime-$1"\n'
    f'[ -f "$r/__main__.py" ] || {{ echo "{MISSING_MARK}"; exit {EXIT_RUNTIME_MISSING}; }}\n'
    "shift 2\n"
    # The cache also keeps what probes learn once per binary (fio's version).
    f'{NODE_CACHE_ENV}="$c" exec "$py" -S "$r" "$@"\n'
)
# Both Python texts below start in syntax that Python 2 parses too, and say first that the
# interpreter is too old: an old Python would otherwise fail on the first f-string with a
# SyntaxError, and an install by such a Python reads as a runtime failure. Checking here costs
# no extra Python start: the install and every task run them anyway.
_VERSION_GATE = (
    "import sys\n"
    f"if sys.version_info < {MIN_PYTHON!r}:\n"
    f"    sys.stdout.write('{TOO_OLD_MARK}%d.%d.%d\\n' % tuple(sys.version_info[:3]))\n"
    f"    sys.exit({EXIT_PYTHON_TOO_OLD})\n"
)
# Unpacked under a private temporary name and renamed into place, so a task never sees a
# half-written runtime and two uploads racing on one node both end with a whole one. The last
# line tells the controller the script ran: a `python` that is not Python may exit 0 unasked.
# Its marker is written in two pieces, so a program that echoes its arguments does not print it.
_INSTALL_PY = _VERSION_GATE + (
    "import compileall, io, os, zipfile\n"
    "tmp, final = sys.argv[1], sys.argv[2]\n"
    "zipfile.ZipFile(io.BytesIO(sys.stdin.buffer.read())).extractall(tmp)\n"
    "compileall.compile_dir(tmp, quiet=2)\n"
    "try:\n"
    "    os.rename(tmp, final)\n"
    "except OSError:\n"
    "    if not os.path.isfile(os.path.join(final, '__main__.py')):\n"
    "        raise\n"
    f"sys.stdout.write('{INSTALLED_MARK[:2]}' '{INSTALLED_MARK[2:]}\\n')\n"
)
UPLOAD_SCRIPT = (
    f"d={_CACHE_DIR}\n"
    'umask 077 && mkdir -p "$d" && chmod 700 "$d" && t=$(mktemp -d "$d/.runtime-XXXXXX") '
    "|| exit 1\n"
    '"$2" -S -c "$3" "$t/r" "$d/runtime-$1"; s=$?\n'
    'rm -rf "$t"\n'
    "exit $s\n"
)
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
# A runtime installed by a newer Python may later be run by an older one (`python` changed).
_ZIP_MAIN = (_VERSION_GATE + "from dcctl.node.main import main\nsys.exit(main())\n").encode()


@dataclass(frozen=True)
class Runtime:
    digest: str
    archive: bytes


@lru_cache(maxsize=1)
def build_runtime() -> Runtime:
    """The zipapp, byte-identical for identical sources so its hash names it across runs."""
    node_dir = Path(__file__).resolve().parent.parent / "node"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        _add(archive, "__main__.py", _ZIP_MAIN)
        _add(archive, "dcctl/__init__.py", b"")
        for source in sorted(node_dir.rglob("*.py")):
            relative = source.relative_to(node_dir.parent.parent).as_posix()
            _add(archive, relative, source.read_bytes())
        for name, data in _shipped_libraries():
            _add(archive, name, data)
    data = buffer.getvalue()
    return Runtime(digest=hashlib.sha256(data).hexdigest()[:16], archive=data)


def _shipped_libraries() -> list[tuple[str, bytes]]:
    """Pure-Python modules the node needs and a stock node lacks.

    pynvml (nvidia-ml-py, one BSD-licensed file) goes along so GPU health checks work on a
    node that has only the driver and a Python: dcctl stays agentless.
    """
    spec = importlib.util.find_spec("pynvml")
    if spec is None or spec.origin is None:
        return []
    return [("pynvml.py", Path(spec.origin).read_bytes())]


def _add(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    archive.writestr(info, data)


def _env_argv(host: Host, *extra: str) -> list[str]:
    # The host's env reaches both scripts: it may move the cache (XDG_CACHE_HOME).
    return ["env", *(f"{name}={value}" for name, value in host.env.items()), *extra]


def task_argv(host: Host, runtime: Runtime, task: str, params: dict[str, Any]) -> list[str]:
    return [
        *_env_argv(host, f"{WATCHDOG_ENV}=1"),
        "sh", "-c", RUN_SCRIPT, "dcctl-run", runtime.digest, host.python, task,
        json.dumps(params, separators=(",", ":")),
    ]  # fmt: skip


def upload_argv(host: Host, runtime: Runtime) -> list[str]:
    return [
        *_env_argv(host),
        "sh", "-c", UPLOAD_SCRIPT, "dcctl-upload", runtime.digest, host.python, _INSTALL_PY,
    ]  # fmt: skip


def run_task(
    transport: Transport,
    host: Host,
    task: str,
    params: dict[str, Any],
    deadline: float,
    on_progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Run one node task and return its payload; every failure is a HostError with its kind.

    `on_progress` is given each progress line the task prints, as it prints it."""
    runtime = build_runtime()
    argv = task_argv(host, runtime, task, params)
    result = _run(transport, argv, deadline, on_progress)
    if _marked(result, EXIT_RUNTIME_MISSING, MISSING_MARK):
        _install(transport, host, runtime, deadline)
        result = _run(transport, argv, deadline, on_progress)
        if _marked(result, EXIT_RUNTIME_MISSING, MISSING_MARK):
            raise HostError(
                "runtime",
                f"{_with(host)} installed the node runtime, yet the task "
                "does not find it in ~/.cache/dcctl (does a login script change HOME?)",
            )
    _check_started(host, result)
    if result.timed_out:
        raise HostError(
            "timeout", f"task {task!r} did not finish before its deadline; killed on the node"
        )
    payload = _payload(host, result)
    if "error" in payload:
        raise HostError(
            "runtime", f"node runtime failed in {task!r}: {shorten(str(payload['error']))}"
        )
    return payload


def _run(
    transport: Transport,
    argv: list[str],
    deadline: float,
    on_progress: ProgressCallback | None,
) -> CommandResult:
    # Passed only when wanted: a transport that never shows progress need not take it.
    if on_progress is None:
        return transport.run(argv, deadline)
    return transport.run(argv, deadline, on_progress=on_progress)


def _marked(result: CommandResult, code: int, mark: str) -> bool:
    return result.exit_code == code and mark in result.stdout


def _with(host: Host) -> str:
    return f"{host.python} on {host.name}"


def _install(transport: Transport, host: Host, runtime: Runtime, deadline: float) -> None:
    upload = transport.run(upload_argv(host, runtime), deadline, stdin=runtime.archive)
    if upload.timed_out:
        raise HostError("timeout", "uploading the node runtime took past the deadline")
    _check_version(host, upload)
    if upload.exit_code != 0:
        why = (
            _last_line(upload.stderr)
            or _last_line(upload.stdout)
            or _killed_by(upload.exit_code)
            or "no output"
        )
        raise HostError(
            "runtime",
            f"cannot install the node runtime in ~/.cache/dcctl with {_with(host)} "
            f"(exit {upload.exit_code}): {shorten(why)}",
        )
    if INSTALLED_MARK not in upload.stdout:
        raise HostError(
            "runtime",
            f"cannot install the node runtime with {_with(host)}: it exited 0 without running "
            f"the install script ({_output(upload)}); is `python` a Python >= "
            f"{_version(MIN_PYTHON)} interpreter? Set `python` for this host in the inventory",
        )


def _check_started(host: Host, result: CommandResult) -> None:
    """The run script found the interpreter, and the interpreter is new enough."""
    if _marked(result, EXIT_NO_PYTHON, NO_PYTHON_MARK):
        raise HostError(
            "runtime",
            f"python interpreter {host.python!r} not found on {host.name}; "
            "set `python` for this host in the inventory",
        )
    _check_version(host, result)


def _check_version(host: Host, result: CommandResult) -> None:
    if not _marked(result, EXIT_PYTHON_TOO_OLD, TOO_OLD_MARK):
        return
    found = result.stdout[result.stdout.rfind(TOO_OLD_MARK) + len(TOO_OLD_MARK) :]
    version = shorten(found.split("\n", 1)[0].strip() or "?", 40)
    raise HostError(
        "runtime",
        f"{_with(host)}: Python {version} is too old, need >= {_version(MIN_PYTHON)} "
        "(set `python` for this host in the inventory)",
    )


def _payload(host: Host, result: CommandResult) -> dict[str, Any]:
    try:
        payload = read_payload(result.stdout)
    except PayloadCutOff:
        raise HostError(
            "runtime",
            f"payload too large (over {STDOUT_KEPT_BYTES // 2**20} MiB): {_with(host)} printed "
            "a result larger than the output dcctl keeps of a task",
        ) from None
    except BadPayload as exc:
        raise HostError("runtime", f"{_with(host)} printed an unreadable result: {exc}") from None
    if payload is None:
        raise HostError("runtime", _no_payload(host, result))
    return payload


def _no_payload(host: Host, result: CommandResult) -> str:
    killed = _killed_by(result.exit_code)
    ended = f"exited {result.exit_code}"
    if killed is not None:
        # The local transport reports -N; a shell that ran the interpreter as its child, 128+N.
        ended = f"was {killed}" if result.exit_code < 0 else f"{ended}: {killed}"
    head = f"{_with(host)} {ended} and printed no dcctl result"
    error = _last_line(result.stderr)
    if error:
        # A traceback or a shell's complaint names the cause better than any guess.
        return f"{head}: {shorten(error)}"
    if killed is not None:
        return f"{head} ({_output(result)})"
    return (
        f"{head} ({_output(result)}); likely causes: a login script that writes to stdout or "
        f"ends the session, or `python` is not a Python >= {_version(MIN_PYTHON)} interpreter"
    )


# What an exit status says of a signal: paramiko reports an SSH exit-signal (the remote
# process was killed) as -1, with no number; -N and 128+N name signal N.
_SSH_EXIT_SIGNAL = -1
_SHELL_SIGNAL_BASE = 128


def _killed_by(exit_code: int) -> str | None:
    """'killed by SIGKILL (out of memory?)' for an exit status that reports a signal."""
    if exit_code == _SSH_EXIT_SIGNAL:
        return "killed by a signal (the SSH server sent no exit status)"
    number = -exit_code if exit_code < 0 else exit_code - _SHELL_SIGNAL_BASE
    try:
        name = signal.Signals(number).name
    except ValueError:
        return None
    # The kernel's OOM killer sends SIGKILL, and so does little else on a node.
    return f"killed by {name}" + (" (out of memory?)" if number == signal.SIGKILL else "")


def _output(result: CommandResult) -> str:
    last = _last_line(result.stdout)
    return f"last output: {shorten(last)!r}" if last else "no output"


def _version(parts: tuple[int, ...]) -> str:
    return ".".join(map(str, parts))


# What a message shows of a line the node printed: enough to recognise it.
SHOWN_CHARS = 160


def shorten(text: str, limit: int = SHOWN_CHARS) -> str:
    """`text` on one line, at most `limit` characters: its start, "…", its end."""
    if len(text) > 4 * limit:  # only its ends can show: do not flatten megabytes
        text = f"{text[: 2 * limit]} {text[-2 * limit :]}"
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    head = (limit - 1) // 2
    return f"{flat[:head]}…{flat[head + 1 - limit :]}"


def _last_line(text: str) -> str:
    """The last non-blank line, looked for only in the text's tail (output may be 16 MiB)."""
    lines = [line for line in text[-65536:].splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""
