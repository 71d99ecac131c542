#!/usr/bin/env bash
# Runs `dcctl bench` for real on a machine with NVIDIA GPUs, within a few minutes, and keeps
# what it measured in $OUT: the check task's node time (it must not import torch any more),
# the bench preflight, GEMM in every dtype plus a 60 s soak with NVML sampling, the node
# allreduce (skipped on a one-GPU machine), fio, and the GEMM worker against a bare
# torch.matmul loop (the ratio the issue asks for: >= 0.97).
#
#   OUT=/tmp/gpu-bench bash tests/gpu/bench_on_gpu.sh
#
# Needs python3 with torch (a CUDA build), typer, rich, pyyaml, nvidia-ml-py, and fio for the
# fio part; no SSH (localhost, local transport).
set -u
out=${OUT:-/tmp/dcctl-gpu-bench}
mkdir -p "$out" "$out/scratch"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
py=$(command -v python3)

nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv | tee "$out/gpus.csv"
cat >"$out/inv.yaml" <<EOF
all:
  hosts:
    localhost:
      connection: local
      python: $py
      scratch_dir: $out/scratch
EOF
dcctl=("$py" -m dcctl -i "$out/inv.yaml" --state-dir "$out/state")

echo "== check: node time without torch"
/usr/bin/time -f "check wall %e s" "${dcctl[@]}" -q check >"$out/check.txt" 2>&1
tail -1 "$out/check.txt"

echo "== bench gemm, every dtype, then a 60 s soak"
timeout 300 "${dcctl[@]}" --json bench gemm --duration 60 >"$out/bench-gemm.json" 2>"$out/bench-gemm.err"
echo "exit $?"
"$py" - "$out/bench-gemm.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
for host in doc["hosts"]:
    for r in host["results"]:
        print(f"{r['id']:24} {r['status']:5} {r['message'][:150]}")
PY

echo "== bench allreduce and fio, quick"
timeout 240 "${dcctl[@]}" -v bench allreduce --quick >"$out/bench-allreduce.txt" 2>&1
echo "exit $?"
timeout 120 "${dcctl[@]}" bench fio --quick >"$out/bench-fio.txt" 2>&1
echo "exit $?"
tail -12 "$out/bench-fio.txt"

echo "== GEMM worker vs a bare torch.matmul loop, bf16 8192"
timeout 240 "$py" tests/perf/gemm_ratio.py --device cuda --dtype bf16 --size 8192 --rounds 3 \
    --out "$out/gemm-gpu.json" 2>&1 | tail -5
