"""How long the controller spends on one host's payload as its kernel log names more XIDs.

For each count N, a node payload with N distinct XID keys (one event each, half of them
hardware XIDs) is framed as the node prints it, then timed: reading it back (`read_payload`:
find the frame, parse the JSON) and judging it (`evaluate_node`). Both run in the controller's
main thread as each host lands, so neither `--timeout` nor Ctrl-C acts during them.

    python tests/perf/evaluate_scaling.py [--keys 1000,10000,100000] [--before REV] [--limit-s 120]

`--before REV` also measures the dcctl of a git revision (exported with `git archive`, run in a
child process), beside this checkout; a measurement past `--limit-s` is stopped and shown as
"> limit". Not part of the test suite (tests/unit/test_payload_bounds.py holds the assertions).

One run on the 2-core development machine, `--keys 1000,4000,10000,100000 --before ad3a40b
--limit-s 60` (read s / judge s):

     keys  payload MiB            before             after
    1,000          0.1     0.002 / 1.235     0.007 / 0.014
    4,000          0.6    0.004 / 13.050     0.029 / 0.037
   10,000          1.5          - / > 60     0.030 / 0.016
  100,000         14.6          - / > 60     0.294 / 0.019

Before, judging was quadratic (every XID key scanned the whole event list and every GPU):
36 s for 8,000 keys, hours for 100,000. After, the controller reads at most what the node
runtime sends of each list (2,000 kernel-log events of a kind) and the rest is one
`payload.size` fail; reading the JSON itself stays linear in its size (at most 16 MiB).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Runs in a child process with the measured tree first on sys.path; prints one JSON line.
MEASURE = """
import json, sys, time
from dcctl.evaluate.node import evaluate_node
from dcctl.node.payload import format_payload
try:
    from dcctl.node.payload import read_payload
except ImportError:  # revisions older than 573725f had only extract_payload
    from dcctl.node.payload import extract_payload as read_payload

keys = int(sys.argv[1])
xids = [
    {"xid": 79 if n % 2 else 13, "pci": f"{n // 256:04x}:{n % 256:02x}:00",
     "text": f"NVRM: Xid (PCI:{n // 256:04x}:{n % 256:02x}:00): 79, pid=1, name=python, GPU has "
             "fallen off the bus", "time": "2026-11-28T03:41:07+00:00"}
    for n in range(keys)
]
gpus = [{"index": i, "pci_bus_id": f"00000000:{i:02x}:00.0", "name": "H100"} for i in range(8)]
log = {"source": "journal", "window_h": 24, "xids": xids, "sxids": [],
       "pcie_bandwidth_limited": []}
text = format_payload({"gpu_source": "procfs", "gpus": gpus, "kernel_log": log})
started = time.perf_counter()
facts = read_payload(text)
read = time.perf_counter()
evaluate_node(facts, {})
judged = time.perf_counter()
print(json.dumps({"mib": len(text) / 2**20, "read_s": read - started, "judge_s": judged - read}))
"""


def measure(tree: Path, keys: int, limit_s: float) -> dict[str, float] | None:
    """Timings for `keys` XID keys with the dcctl under `tree`; None past limit_s."""
    command = [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(tree)!r})\n{MEASURE}"]
    try:
        proc = subprocess.run(
            [*command, str(keys)], capture_output=True, text=True, timeout=limit_s, check=True
        )
    except subprocess.TimeoutExpired:
        return None
    timings: dict[str, float] = json.loads(proc.stdout)
    return timings


def export(revision: str, into: Path) -> Path:
    """The dcctl package of `revision`, unpacked under `into` (git archive: no checkout)."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", revision, "dcctl"], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def cell(timings: dict[str, float] | None, limit_s: float) -> str:
    if timings is None:
        return f"- / > {limit_s:g}".rjust(17)
    return f"{timings['read_s']:.3f} / {timings['judge_s']:.3f}".rjust(17)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", default="1000,10000,100000")
    parser.add_argument("--before", metavar="REV", help="also measure this git revision")
    parser.add_argument("--limit-s", type=float, default=120.0)
    args = parser.parse_args()
    counts = [int(part) for part in args.keys.split(",")]
    with tempfile.TemporaryDirectory() as scratch:
        before = export(args.before, Path(scratch)) if args.before else None
        print(f"{'keys':>9} {'payload MiB':>12} {'before':>17} {'after':>17}  (read s / judge s)")
        for keys in counts:
            after = measure(REPO, keys, args.limit_s)
            old = measure(before, keys, args.limit_s) if before is not None else None
            size = f"{after['mib']:.1f}" if after is not None else "?"
            shown_before = cell(old, args.limit_s) if before is not None else "-".rjust(17)
            print(f"{keys:>9,} {size:>12} {shown_before} {cell(after, args.limit_s)}", flush=True)


if __name__ == "__main__":
    main()
