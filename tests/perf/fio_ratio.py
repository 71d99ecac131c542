"""dcctl's fio benchmark against the same jobs run with the fio CLI by hand, in one run.

For each job and round, `run_fio` (one job, fresh directory, dcctl's command and parser) and the
plain command an operator would type (`fio --name=... --rw=... --bs=1M ... --output-format=json`,
figures read straight from fio's JSON here, not through dcctl's parser) run back to back on the
same filesystem with the same size, runtime and ramp; which goes first alternates by round so
drift on a shared machine hits both. Each round gives a ratio per figure (dcctl / CLI; 1.0 = the
same figure) from two runs seconds apart, and the figure reported per job is the median of those
paired ratios (the ratio of the medians is in the JSON too), for MB/s, IOPS and p99 completion
latency; the check is |ratio - 1| <= 5 % for MB/s and IOPS. Storage figures on a shared machine
swing by tens of percent from one run to the next: use many short rounds there.

    python tests/perf/fio_ratio.py                          # 3 rounds, 5 s + 1 s ramp, 256 MiB
    python tests/perf/fio_ratio.py --dir /scratch --runtime 30 --size-mb 4096 --rounds 5

Writes every round's raw figures to tests/perf/results/fio.json (--out). Exits 1 when a ratio
is outside the tolerance. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from dcctl.node.bench.fio import run_fio  # noqa: E402
from dcctl.node.bench.fio_request import JOB_ORDER, JOBS  # noqa: E402

DEFAULT_OUT = REPO / "tests" / "perf" / "results" / "fio.json"
TOLERANCE = 0.05
# What an operator types for each job: the classic options, human units.
CLI_JOBS = {
    "seqread": ["--rw=read", "--bs=1M", "--iodepth=32", "--numjobs=1"],
    "seqwrite": ["--rw=write", "--bs=1M", "--iodepth=32", "--numjobs=1"],
    "randread": ["--rw=randread", "--bs=4k", "--iodepth=64", "--numjobs=4"],
    "randwrite": ["--rw=randwrite", "--bs=4k", "--iodepth=64", "--numjobs=4"],
}


def seconds(value: float) -> str:
    """fio reads "0.5" as 0 s (it drops the fraction without a word): whole seconds as an
    operator types them, anything finer in ms."""
    return f"{value:g}" if value == int(value) else f"{round(value * 1000)}ms"


def cli_figures(name: str, directory: Path, args: argparse.Namespace) -> dict[str, float]:
    """The job run with the fio CLI in a directory of its own, figures from fio's JSON."""
    workdir = Path(tempfile.mkdtemp(prefix="cli-fio-", dir=directory))
    try:
        done = subprocess.run(
            ["fio", f"--name={name}", f"--directory={workdir}", *CLI_JOBS[name],
             f"--size={args.size_mb}M", "--direct=1", "--ioengine=libaio", "--time_based",
             f"--runtime={seconds(args.runtime)}", f"--ramp_time={seconds(args.ramp)}",
             "--group_reporting",
             "--output-format=json"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
    finally:
        shutil.rmtree(workdir)
    job = json.loads(done.stdout[done.stdout.index("{") :])["jobs"][0]
    stats = job["write" if "write" in name else "read"]
    return {
        "mb_s": stats["bw_bytes"] / 1e6,
        "iops": stats["iops"],
        "p99_us": stats["clat_ns"]["percentile"]["99.000000"] / 1000,
    }


def dcctl_figures(name: str, directory: Path, args: argparse.Namespace) -> dict[str, float]:
    params = {
        "scratch_dir": str(directory),
        "runtime_s": args.runtime,
        "ramp_s": args.ramp,
        "size_mb": args.size_mb,
        "jobs": [name],
    }
    section = run_fio(params, time.monotonic() + 10 * (args.runtime + args.ramp) + 120)
    if section["error"] or not section["direct"]:
        raise SystemExit(f"dcctl's fio run failed: {section['error'] or section['note']}")
    [job] = section["jobs"]
    return {"mb_s": job["mb_s"], "iops": job["iops"], "p99_us": job["clat_us"]["p99"] or 0.0}


def machine(directory: Path) -> dict[str, Any]:
    fs = subprocess.run(
        ["findmnt", "-n", "-o", "FSTYPE,SOURCE", "--target", str(directory)],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    version = subprocess.run(["fio", "--version"], capture_output=True, text=True, check=False)
    return {
        "fio": version.stdout.strip(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "nproc": os.cpu_count(),
        "filesystem": fs,
        "directory": str(directory),
        "load_avg_1m": os.getloadavg()[0],
    }


def measure(args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    rounds: list[dict[str, Any]] = []
    for number in range(args.rounds):
        for name in args.jobs:
            tools = [("dcctl", dcctl_figures), ("cli", cli_figures)]
            if number % 2:
                tools.reverse()
            row: dict[str, Any] = {"round": number, "job": name}
            for tool, run in tools:
                row[tool] = run(name, directory, args)
            rounds.append(row)
            print(f"round {number} {name:9} dcctl {row['dcctl']}  cli {row['cli']}", flush=True)
    return {"rounds": rounds, "ratios": ratios(rounds, args.jobs)}


METRICS = ("mb_s", "iops", "p99_us")


def ratios(rounds: list[dict[str, Any]], jobs: list[str]) -> dict[str, dict[str, float]]:
    """Per job and figure: the median of the paired ratios, and the ratio of the medians."""
    found = {}
    for name in jobs:
        rows = [row for row in rounds if row["job"] == name]
        found[name] = {
            metric: statistics.median(r["dcctl"][metric] / r["cli"][metric] for r in rows)
            for metric in METRICS
        }
        found[name].update(
            {
                f"{metric}_of_medians": statistics.median(r["dcctl"][metric] for r in rows)
                / statistics.median(r["cli"][metric] for r in rows)
                for metric in METRICS
            }
        )
    return found


def report(found: dict[str, dict[str, float]]) -> bool:
    print(f"\n{'job':10} {'MB/s':>8} {'IOPS':>8} {'p99':>8}   (dcctl / fio CLI, paired)")
    within = True
    for name, row in found.items():
        ok = all(abs(row[m] - 1) <= TOLERANCE for m in ("mb_s", "iops"))
        within = within and ok
        cells = " ".join(f"{row[m]:8.3f}" for m in METRICS)
        print(f"{name:10} {cells}   {'ok' if ok else 'OUTSIDE 5 %'}")
    return within


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp"))
    parser.add_argument("--runtime", type=float, default=5.0)
    parser.add_argument("--ramp", type=float, default=1.0)
    parser.add_argument("--size-mb", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", default=",".join(JOB_ORDER))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    args.jobs = [name for name in args.jobs.split(",") if name in JOBS]
    directory = Path(tempfile.mkdtemp(prefix="fio-ratio-", dir=args.dir))
    try:
        settings = {k: v for k, v in vars(args).items() if k not in ("dir", "out")}
        document = {"schema": "dcctl.perf.fio/1", "machine": machine(directory),
                    "settings": settings, **measure(args, directory)}  # fmt: skip
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    within = report(document["ratios"])
    print(f"\nraw figures: {args.out}")
    return 0 if within else 1


if __name__ == "__main__":
    sys.exit(main())
