"""Inventory load benchmark: wall time, CPU time and peak memory of loading large inventories.

Generates inventories of 10,000 and 100,000 hosts in five shapes, and a few hostile files
that must be refused (or, for `<<` keys, loaded in linear time), then loads each in a fresh
interpreter (so one case's memory cannot hide in another's) and reports:

- `load s`: `load_inventory` + `select_hosts`, timed inside the child;
- `wall s`, `cpu s`: the whole child process (interpreter start and imports included);
- `RSS MB`: the child's peak resident memory (getrusage of the reaped child);
- `exit`: 0 loaded, 2 refused (an InputError, as the CLI would exit).

    python tests/perf/inventory_load.py --hosts 10000,100000 --out results.json

Not a pytest module (name and folder are outside pyproject's testpaths). See README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
RACK = 32  # hosts per rack group
POD = 32  # racks per pod group

# Runs in the child: load, select every host, print one JSON line.
CHILD = """
import json, sys, time
start = time.perf_counter()
from dcctl.errors import InputError
from dcctl.inventory import load_inventory, select_hosts
imported = time.perf_counter()
try:
    inventory = load_inventory(sys.argv[1], env={})
    hosts = len(select_hosts(inventory, None))
    groups, error, code = len(inventory.groups), None, 0
except InputError as exc:
    hosts, groups, error, code = 0, 0, str(exc)[-160:], 2
done = time.perf_counter()
print(json.dumps({"load_s": done - imported, "import_s": imported - start, "hosts": hosts,
                  "groups": groups, "error": error, "code": code}))
"""


def write_lines(path: Path, lines: Iterator[str]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for line in lines:
            handle.write(line + "\n")


def flat(n: int) -> Iterator[str]:
    """One host name per line under `all`."""
    yield "all:"
    yield "  hosts:"
    for i in range(n):
        yield f"    gpu{i:06d}.dc1.example.com:"


def with_vars(n: int) -> Iterator[str]:
    """Each host with an address, a user and a port, as exported from a CMDB."""
    yield "all:"
    yield "  hosts:"
    for i in range(n):
        yield f"    gpu{i:06d}.dc1.example.com:"
        yield f"      ansible_host: 10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
        yield "      ansible_user: root"
        yield "      ansible_port: 22"


def ranges(n: int) -> Iterator[str]:
    """One rack group per 32 hosts, each host line a range: `r0001-gpu[01:32]`."""
    yield "all:"
    yield "  vars: {user: root, expect: {gpu_count: 8, driver: '>=550'}}"
    yield "  children:"
    for rack in range(n // RACK):
        yield f"    rack{rack:05d}:"
        yield "      hosts:"
        yield f"        r{rack:05d}-gpu[01:{RACK}]:"


def many_groups(n: int) -> Iterator[str]:
    """Hosts listed one by one in rack groups, racks in pods, and every host also in one
    of 8 SKU groups: ~n/32 + n/1024 + 8 groups, host vars at three levels."""
    yield "all:"
    yield "  vars: {user: root}"
    yield "  children:"
    for pod in range(max(1, n // (RACK * POD))):
        yield f"    pod{pod:03d}:"
        yield f"      vars: {{jump: bastion{pod:03d}.example.com}}"
        yield "      children:"
        for rack in range(pod * POD, min((pod + 1) * POD, n // RACK)):
            yield f"        rack{rack:05d}:"
            yield "          vars: {expect: {gpu_count: 8}}"
            yield "          hosts:"
            for host in range(rack * RACK, (rack + 1) * RACK):
                yield f"            gpu{host:06d}: {{host: 10.0.{host >> 8 & 255}.{host & 255}}}"
    for sku in range(8):
        yield f"    sku{sku}:"
        yield "      hosts:"
        for host in range(sku, n, 8):
            yield f"        gpu{host:06d}:"


def env_lines(count: int) -> Iterator[str]:
    yield "  vars:"
    yield "    env:"
    for var in range(count):
        yield f"      VAR_{var:05d}: value{var}"


def shared_env(n: int) -> Iterator[str]:
    """A 1,000-variable env (dcctl's limit) on `all`, racks of ranges each setting one more:
    hosts share their rack's merged env instead of holding a copy each."""
    yield "all:"
    yield from env_lines(1000)
    yield "  children:"
    for rack in range(n // RACK):
        yield f"    rack{rack:05d}:"
        yield f"      vars: {{env: {{RACK: '{rack}'}}}}"
        yield "      hosts:"
        yield f"        r{rack:05d}-gpu[01:{RACK}]:"


def alias_bomb(_: int) -> Iterator[str]:
    """A billion laughs of groups: 40 levels, each listing the one below twice."""
    yield "all:"
    yield "  children:"
    yield "    g0: &g0 {hosts: {h1: }}"
    for level in range(1, 40):
        below = f"*g{level - 1}"
        yield f"    g{level}: &g{level} {{children: {{a{level}: {below}, b{level}: {below}}}}}"


def billion_range(_: int) -> Iterator[str]:
    yield "all:"
    yield "  hosts:"
    yield "    node[1:1000000000]:"


def env_too_large(_: int) -> Iterator[str]:
    """200 KB: 20,000 env variables over 1,000 hosts (3.3 s and 425 MB before the limit)."""
    yield "all:"
    yield from env_lines(20_000)
    yield "  hosts:"
    yield "    n[1:1000]:"


def merge_keys(_: int) -> Iterator[str]:
    """900,000 `<<:` keys in one mapping, inside every cap: minutes of PyYAML's
    flatten_mapping (quadratic in the keys), now a linear pass."""
    yield "all:"
    yield "  vars:"
    yield "    ansible_empty: &e {}"
    yield "  hosts:"
    yield "    h1:"
    for _key in range(900_000):
        yield "      <<: *e"


def oversize(_: int) -> Iterator[str]:
    yield "all: {hosts: {h1: }}"
    for _line in range(17 * 1024):
        yield "#" * 1023


SHAPES: dict[str, Callable[[int], Iterator[str]]] = {
    "flat": flat,
    "vars": with_vars,
    "ranges": ranges,
    "groups": many_groups,
    "env": shared_env,
}
HOSTILE: dict[str, Callable[[int], Iterator[str]]] = {
    "refuse: alias bomb (2^40)": alias_bomb,
    "refuse: node[1:1e9]": billion_range,
    "refuse: 17 MiB file": oversize,
    "refuse: env of 20,000": env_too_large,
    "load: 900,000 << keys": merge_keys,
}


@dataclass
class Row:
    case: str
    hosts_requested: int
    file_mb: float
    hosts: int
    groups: int
    code: int
    load_s: float
    wall_s: float
    cpu_s: float
    rss_mb: float
    loadavg_before: float
    error: str | None


def run_child(path: Path) -> tuple[dict[str, Any], float, float, float]:
    """The child's report, wall seconds, CPU seconds and peak RSS in MB."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{path.name}: child failed with {proc.returncode}")
    return json.loads(output), wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def measure(case: str, n: int, path: Path, repeat: int) -> Row:
    runs = []
    loadavg = os.getloadavg()[0]
    for _ in range(repeat):
        runs.append(run_child(path))
    report = runs[0][0]
    return Row(
        case=case,
        hosts_requested=n,
        file_mb=round(path.stat().st_size / 2**20, 2),
        hosts=report["hosts"],
        groups=report["groups"],
        code=report["code"],
        load_s=round(statistics.median(r[0]["load_s"] for r in runs), 3),
        wall_s=round(statistics.median(r[1] for r in runs), 3),
        cpu_s=round(statistics.median(r[2] for r in runs), 3),
        rss_mb=round(max(r[3] for r in runs), 1),
        loadavg_before=round(loadavg, 2),
        error=report["error"],
    )


def machine() -> dict[str, Any]:
    import yaml

    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip()  # fmt: skip
    dirty = subprocess.run(["git", "status", "--porcelain", "dcctl/inventory"], cwd=REPO,
                           capture_output=True, text=True).stdout.strip() != ""  # fmt: skip
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())  # fmt: skip
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "pyyaml": metadata.version("PyYAML"),
        "libyaml": bool(getattr(yaml, "__with_libyaml__", False)),
        "dcctl_commit": commit,
        "dcctl_inventory_uncommitted_changes": dirty,
    }


def print_row(row: Row) -> None:
    print(f"{row.case:<26} {row.hosts_requested:>7} {row.file_mb:>7.2f} {row.hosts:>7} "
          f"{row.groups:>6} {row.code:>4} {row.load_s:>7.2f} {row.wall_s:>7.2f} "
          f"{row.cpu_s:>7.2f} {row.rss_mb:>7.1f} {row.loadavg_before:>5.2f}",
          flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", default="10000,100000", help="comma-separated host counts")
    parser.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated shapes")
    parser.add_argument("--repeat", type=int, default=1, help="runs per case (median, max RSS)")
    parser.add_argument("--no-hostile", action="store_true", help="skip the refused files")
    parser.add_argument("--out", type=Path, help="write every row and the machine as JSON")
    args = parser.parse_args()
    counts = [int(text) for text in args.hosts.split(",")]
    cases = [("baseline: 1 host", 1, flat)]  # the interpreter and imports alone
    cases += [(shape, n, SHAPES[shape]) for n in counts for shape in args.shapes.split(",")]
    if not args.no_hostile:
        cases += [(name, 0, make) for name, make in HOSTILE.items()]
    rows: list[Row] = []
    print(f"{'case':<26} {'hosts':>7} {'file MB':>7} {'loaded':>7} {'groups':>6} {'exit':>4} "
          f"{'load s':>7} {'wall s':>7} {'cpu s':>7} {'RSS MB':>7} {'load':>5}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="dcctl-inv-perf-") as scratch:
        for case, n, make in cases:
            path = Path(scratch) / f"{case.split(':')[0]}-{n}.yaml"
            write_lines(path, make(n))
            rows.append(measure(case, n, path, args.repeat))
            print_row(rows[-1])
            path.unlink()
            if args.out:
                document = {"schema": "dcctl.perf.inventory_load/1", "machine": machine(),
                            "rows": [asdict(row) for row in rows]}  # fmt: skip
                args.out.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
