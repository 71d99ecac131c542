#!/usr/bin/env bash
# Runs `dcctl certify` and the cluster-scope allreduce for real on a machine with NVIDIA GPUs,
# within a few minutes, and keeps what it measured in $OUT: the quick certification (bf16 MLP,
# DDP over NCCL on every GPU), samples/s and step times per rank, and the injected bit flip
# caught on rank 0. One machine is one node: the gang path runs with one node of N GPUs.
#
#   OUT=/tmp/gpu-certify bash tests/gpu/certify_on_gpu.sh
#
# Needs python3 with torch (a CUDA build), typer, rich, pyyaml, nvidia-ml-py; no SSH.
set -u
out=${OUT:-/tmp/dcctl-gpu-certify}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
py=$(command -v python3)

nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv | tee "$out/gpus.csv"
cat >"$out/inv.yaml" <<EOF
all:
  hosts:
    localhost:
      connection: local
      python: $py
EOF
dcctl=("$py" -m dcctl -i "$out/inv.yaml" --state-dir "$out/state")

summary() {
    "$py" - "$1" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
for item in doc["cluster_results"]:
    print(f"{item['id']:20} {item['status']:5} {item['message'][:200]}")
    cert = item.get("certificate") or {}
    for reason in cert.get("reasons", []):
        print("   reason:", reason[:200])
    for rank in cert.get("ranks", []):
        print("   rank", rank["rank"], rank.get("gpu"), "samples/s", round(rank["samples_per_s"] or 0),
              "step p50/p99 ms", round(1e3 * (rank["step_p50_s"] or 0), 2),
              round(1e3 * (rank["step_p99_s"] or 0), 2), "local p50 ms",
              round(1e3 * (rank["local_p50_s"] or 0), 2))
    if item.get("metrics"):
        print("   metrics", item["metrics"])
PY
}

echo "== certify --quick (healthy)"
/usr/bin/time -f "certify wall %e s" timeout 400 "${dcctl[@]}" --json certify --quick \
    >"$out/certify.json" 2>"$out/certify.err"
echo "exit $?"; tail -1 "$out/certify.err"; summary "$out/certify.json"

echo "== certify --quick with a bit flip on rank 0 at step 20"
DCCTL_FAULT=bitflip:rank=0,step=20 timeout 300 "${dcctl[@]}" --json certify --quick --steps 40 \
    >"$out/certify-bitflip.json" 2>"$out/certify-bitflip.err"
echo "exit $? (1 expected)"; summary "$out/certify-bitflip.json"

echo "== allreduce, cluster scope (one node: every GPU in one job), quick"
timeout 240 "${dcctl[@]}" --json bench allreduce --scope cluster --quick \
    >"$out/cluster-allreduce.json" 2>"$out/cluster-allreduce.err"
echo "exit $?"; summary "$out/cluster-allreduce.json"
