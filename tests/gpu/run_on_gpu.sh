#!/usr/bin/env bash
# Runs dcctl's node probes and `dcctl check` for real on a machine with NVIDIA GPUs, and keeps
# what they saw (raw NVML readings, the facts payload, the judged run, nvidia-smi -q) in $OUT,
# so the recorded fixtures under tests/fixtures/ can be checked against a live driver.
#
#   OUT=/tmp/gpu-run bash tests/gpu/run_on_gpu.sh
#
# Needs python3 with typer, rich, pyyaml and nvidia-ml-py; no SSH (localhost, local transport).
set -u
out=${OUT:-/tmp/dcctl-gpu-run}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

nvidia-smi --query-gpu=name,driver_version,pci.bus_id,pcie.link.gen.current,pcie.link.gen.max,pcie.link.width.current,pcie.link.width.max --format=csv
nvidia-smi -q >"$out/nvidia-smi-q.txt" 2>&1

echo "== raw NVML readings (the reader dcctl ships)"
python3 - "$out" <<'PY'
import json, sys, time
from dcctl.node.probes.gpu.nvml_read import read_nvml
started = time.monotonic()
raw = read_nvml()
print(f"read_nvml: {time.monotonic() - started:.3f} s")
with open(f"{sys.argv[1]}/nvml-raw.json", "w") as f:
    json.dump(raw, f, indent=1, default=str)
PY

echo "== node runtime zipapp, as shipped to a node"
python3 - "$out" <<'PY'
import json, subprocess, sys, time
from dcctl.fleet.runtime import build_runtime
from dcctl.node.payload import read_payload
out = sys.argv[1]
with open(f"{out}/runtime.pyz", "wb") as f:
    f.write(build_runtime().archive)
started = time.monotonic()
proc = subprocess.run([sys.executable, f"{out}/runtime.pyz", "facts", '{"scratch_dir": "/tmp"}'],
                      capture_output=True, text=True, timeout=120)
print(f"facts task: exit {proc.returncode}, {time.monotonic() - started:.2f} s; stderr: {proc.stderr[-500:]}")
payload = read_payload(proc.stdout) or {}
with open(f"{out}/facts.json", "w") as f:
    json.dump(payload, f, indent=1)
print(json.dumps({k: payload.get(k) for k in ("driver", "cuda", "gpu_source", "probe_errors", "fabric_manager", "nvswitch_count")}))
for gpu in payload.get("gpus") or []:
    print(json.dumps({k: gpu.get(k) for k in ("index", "name", "pci_bus_id", "serial", "vbios", "persistence_mode", "mig_mode", "ecc", "row_remap", "pcie", "clock_events", "temperature_c", "temperature_slowdown_c", "power_w", "power_limit_w", "fabric")}))
    print("nvlink links:", len(gpu.get("nvlink") or []), (gpu.get("nvlink") or [])[:2])
print("kernel_log:", json.dumps(payload.get("kernel_log"))[:400])
PY

echo "== dcctl check on localhost with GPU expectations"
cat >"$out/inventory.yaml" <<YAML
all:
  hosts:
    localhost:
      connection: local
      python: $(command -v python3)
      expect: {driver: ">=550", gpu_count: 1, gpu_model: "*H*"}
YAML
python3 -m dcctl -i "$out/inventory.yaml" --state-dir "$out/state" --json check >"$out/check.json"
echo "check exit code: $?"
COLUMNS=160 python3 -m dcctl -i "$out/inventory.yaml" --state-dir "$out/state" -v check
rm -rf "$out/state" "$out/runtime.pyz"
