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
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from dcctl.inventory.model import Host
from dcctl.node.payload import extract_payload
from dcctl.node.probes.software import NODE_CACHE_ENV
from dcctl.node.watchdog import WATCHDOG_ENV
from dcctl.transport.base import HostError, Transport

MISSING_MARK = "<dcctl-runtime-missing>"
NO_PYTHON_MARK = "<dcctl-no-python>"

# Fixed shell text; everything that comes from an inventory is passed as a positional argument.
_CACHE_DIR = '"${XDG_CACHE_HOME:-$HOME/.cache}/dcctl"'
RUN_SCRIPT = (
    "py=$2\n"
    f'command -v "$py" >/dev/null 2>&1 || {{ echo "{NO_PYTHON_MARK}"; exit 98; }}\n'
    f"c={_CACHE_DIR}\n"
    'r="$c/runtime-$1"\n'
    f'[ -f "$r/__main__.py" ] || {{ echo "{MISSING_MARK}"; exit 97; }}\n'
    "shift 2\n"
    # The cache also keeps what probes learn once per binary (fio's version).
    f'{NODE_CACHE_ENV}="$c" exec "$py" -S "$r" "$@"\n'
)
# Unpacked under a private temporary name and renamed into place, so a task never sees a
# half-written runtime and two uploads racing on one node both end with a whole one.
_INSTALL_PY = (
    "import compileall, io, os, sys, zipfile\n"
    "tmp, final = sys.argv[1], sys.argv[2]\n"
    "zipfile.ZipFile(io.BytesIO(sys.stdin.buffer.read())).extractall(tmp)\n"
    "compileall.compile_dir(tmp, quiet=2)\n"
    "try:\n"
    "    os.rename(tmp, final)\n"
    "except OSError:\n"
    "    if not os.path.isfile(os.path.join(final, '__main__.py')):\n"
    "        raise\n"
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
_ZIP_MAIN = b"import sys\nfrom dcctl.node.main import main\nsys.exit(main())\n"


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
    transport: Transport, host: Host, task: str, params: dict[str, Any], deadline: float
) -> dict[str, Any]:
    """Run one node task and return its payload; every failure is a HostError with its kind."""
    runtime = build_runtime()
    argv = task_argv(host, runtime, task, params)
    result = transport.run(argv, deadline)
    if result.exit_code == 97 and MISSING_MARK in result.stdout:
        upload = transport.run(upload_argv(host, runtime), deadline, stdin=runtime.archive)
        if upload.timed_out:
            raise HostError("timeout", "uploading the node runtime took past the deadline")
        if upload.exit_code != 0:
            raise HostError(
                "runtime",
                f"cannot install the node runtime in ~/.cache/dcctl: {_last_line(upload.stderr)}",
            )
        result = transport.run(argv, deadline)
    if result.exit_code == 98 and NO_PYTHON_MARK in result.stdout:
        raise HostError(
            "runtime",
            f"python interpreter {host.python!r} not found on {host.name}; "
            "set `python` for this host in the inventory",
        )
    if result.timed_out:
        raise HostError(
            "timeout", f"task {task!r} did not finish before its deadline; killed on the node"
        )
    payload = extract_payload(result.stdout)
    if payload is None:
        raise HostError(
            "runtime",
            f"{host.python} exited {result.exit_code} without a result: "
            f"{_last_line(result.stderr) or 'no output'}",
        )
    if "error" in payload:
        raise HostError("runtime", f"node runtime failed in {task!r}: {payload['error']}")
    return payload


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""
