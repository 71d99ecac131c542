"""Wall time of `dcctl bench all --quick` on localhost, and what dcctl adds over the bare work.

In one run, alternating rounds:
- dcctl: `python -m dcctl -i <localhost inventory> --state-dir S -q bench all --quick` (the
  CLI, the fleet, the local transport, evaluation, the run store and the console table);
- bare: the same node task run directly, `python -m dcctl.node bench '<the params dcctl
  sends>'` (preflight, GEMM workers, gloo allreduce under torchrun, fio), with nothing around it.

The difference of the medians is dcctl's own cost. Raw times go to tests/perf/results/.

    python tests/perf/bench_quick.py --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "tests" / "perf" / "results" / "bench-quick.json"


def _timed(argv: list[str], env: dict[str, str]) -> float:
    began = time.monotonic()
    done = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - began
    if done.returncode != 0:
        sys.exit(f"{argv[:4]} exited {done.returncode}:\n{done.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from dcctl.cli.bench import budgets

    work = Path(tempfile.mkdtemp(prefix="dcctl-bench-perf-"))
    scratch = work / "scratch"
    inventory = work / "inv.yaml"
    inventory.write_text(
        "all:\n  hosts:\n    localhost:\n      connection: local\n"
        f"      python: {sys.executable}\n      scratch_dir: {scratch}\n"
    )
    chosen = ["gemm", "allreduce", "fio"]
    params = {"benchmarks": chosen, "quick": True, "budgets_s": budgets(chosen, True, 1, 0.0),
              "scratch_dir": str(scratch), "gemm": {}, "allreduce": {}, "fio": {}}  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    dcctl = [sys.executable, "-m", "dcctl", "-i", str(inventory), "--state-dir",
             str(work / "state"), "-q", "bench", "all", "--quick"]  # fmt: skip
    bare = [sys.executable, "-S", "-m", "dcctl.node", "bench", json.dumps(params)]
    times: dict[str, list[float]] = {"dcctl": [], "bare": []}
    load = os.getloadavg()[0]
    for round_number in range(1, args.rounds + 1):
        times["dcctl"].append(_timed(dcctl, env))
        times["bare"].append(_timed(bare, env))
        print(f"round {round_number}: dcctl {times['dcctl'][-1]:.1f} s, "
              f"bare {times['bare'][-1]:.1f} s", flush=True)  # fmt: skip
    medians = {name: statistics.median(values) for name, values in times.items()}
    report = {
        "what": "dcctl bench all --quick on localhost vs the same node task run directly",
        "cpus": os.cpu_count(),
        "load_1m_before": load,
        "rounds": times,
        "median_s": medians,
        "dcctl_adds_s": medians["dcctl"] - medians["bare"],
        "ratio": medians["dcctl"] / medians["bare"],
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=1) + "\n")
    print(f"dcctl {medians['dcctl']:.1f} s, bare {medians['bare']:.1f} s: dcctl adds "
          f"{report['dcctl_adds_s']:.1f} s (ratio {report['ratio']:.2f}); {RESULTS}")  # fmt: skip


if __name__ == "__main__":
    main()
