"""torch and fio on the node: what benchmarks will find when they run."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from typing import Any, cast

FIO_TIMEOUT_S = 10.0
# Set by the controller's run script to the node's dcctl cache (where the runtime lives).
NODE_CACHE_ENV = "DCCTL_NODE_CACHE"
FIO_CACHE_FILE = "fio-version.json"

_TORCH_VERSION_RE = re.compile(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", re.MULTILINE)


def parse_torch_version_file(text: str) -> str | None:
    """`__version__ = '2.13.0+cpu'` from torch/version.py."""
    match = _TORCH_VERSION_RE.search(text)
    return match.group(1) if match else None


def torch_version() -> str | None:
    """The installed torch version, without importing torch.

    Read from torch/version.py, found without importing anything: importing torch costs
    seconds, and even importlib.metadata costs tens of milliseconds per node.
    """
    for location in _torch_package_dirs():
        try:
            with open(os.path.join(location, "version.py"), encoding="utf-8") as handle:
                return parse_torch_version_file(handle.read())
        except OSError:
            continue
    return None


def _torch_package_dirs() -> list[str]:
    spec = importlib.util.find_spec("torch")
    if spec is not None:
        return list(spec.submodule_search_locations or [])
    if not sys.flags.no_site:
        return []
    # The runtime runs with -S, so sys.path lacks site-packages: look where site would put
    # them, for this interpreter's venv first.
    return [os.path.join(directory, "torch") for directory in site_package_dirs()]


def site_package_dirs() -> list[str]:
    """The site-packages directories `site` would add, without running its .pth hooks."""
    import site  # under -S, importing site does not run it

    venv = _venv_prefix()
    system = [*site.getsitepackages(), site.getusersitepackages()]
    if venv is None:
        return system
    prefix, include_system = venv
    # Built here, not by site.getsitepackages([prefix]): Debian's patched site gives only
    # dist-packages for a prefix that is not sys.prefix, and under -S a venv's is not.
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    libdirs = sorted({"lib", getattr(sys, "platlibdir", "lib")})
    own = [os.path.join(prefix, libdir, version, "site-packages") for libdir in libdirs]
    return own + system if include_system else own


def _venv_prefix() -> tuple[str, bool] | None:
    """(venv prefix, include-system-site-packages) when this interpreter is a venv's."""
    exe_dir = os.path.dirname(os.path.abspath(sys.executable))
    prefix = os.path.dirname(exe_dir)
    for config in (os.path.join(exe_dir, "pyvenv.cfg"), os.path.join(prefix, "pyvenv.cfg")):
        try:
            with open(config, encoding="utf-8") as handle:
                text = handle.read()
        except OSError:
            continue
        match = re.search(
            r"^\s*include-system-site-packages\s*=\s*(\w+)", text, re.MULTILINE | re.IGNORECASE
        )
        return prefix, match is not None and match.group(1).lower() == "true"
    return None


def collect_torch() -> dict[str, Any] | None:
    """{version} or None when torch is not installed, read from its files: `check` never
    imports torch (seconds per node, and CUDA init on a GPU in a bad state can hang). Whether
    torch can use the GPUs is the bench preflight's question (dcctl.node.bench.preflight)."""
    version = torch_version()
    return None if version is None else {"version": version}


def parse_fio_version(text: str) -> str | None:
    """`fio --version` output ("fio-3.33") -> "3.33"."""
    match = re.search(r"fio-(\d+(?:\.\d+)*)", text)
    return match.group(1) if match else None


def collect_fio() -> str | None:
    path = shutil.which("fio")
    if path is None:
        return None
    cache_dir = os.environ.get(NODE_CACHE_ENV)
    return read_fio_version(path) if not cache_dir else cached_fio_version(path, cache_dir)


def read_fio_version(path: str) -> str | None:
    proc = subprocess.run(
        [path, "--version"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=FIO_TIMEOUT_S,
    )
    return parse_fio_version(proc.stdout)


def cached_fio_version(path: str, cache_dir: str) -> str | None:
    """`fio --version`, remembered in the node's dcctl cache for as long as the binary is the
    same file: starting fio costs ~20 ms of CPU, which every check on every node would pay."""
    stat = os.stat(path)
    identity = [os.path.realpath(path), stat.st_ino, stat.st_size, stat.st_mtime_ns]
    cache_file = os.path.join(cache_dir, FIO_CACHE_FILE)
    try:
        with open(cache_file, encoding="utf-8") as handle:
            cached = json.load(handle)
        if cached["identity"] == identity:
            return cast("str | None", cached["version"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    version = read_fio_version(path)
    # Written aside and renamed: another task on this node may be reading it right now.
    temporary = f"{cache_file}.{os.getpid()}.tmp"
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump({"identity": identity, "version": version}, handle)
        os.replace(temporary, cache_file)
    except OSError:  # an unwritable cache only costs the next task the same ~20 ms
        with contextlib.suppress(OSError):
            os.unlink(temporary)
    return version
