"""Before any benchmark: can the host's Python run torch, and does torch see every GPU NVML sees?

The runtime runs with `-S` and never imports torch; this asks a child of the same interpreter,
with its normal site-packages, to import torch and initialise CUDA, and reads one JSON line
back. A child can be timed out when CUDA init hangs on a GPU in a bad state, and its crash is
not the task's. The answer is either what the benchmarks will run on (torch, CUDA runtime and
NCCL versions, the devices) or one error that names the interpreter and what to install.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

PREFLIGHT_TIMEOUT_S = 180.0
_MARK = "<dcctl-preflight>"
TORCH_INSTALL_URL = "https://pytorch.org/get-started/locally/"

# Runs under the host's python with its site-packages. Kept to syntax Python 3.8 reads.
_SNIPPET = r"""
import json, sys, warnings
out = {"python": sys.executable}
try:
    import torch
except Exception as exc:
    out["import_error"] = "%s: %s" % (type(exc).__name__, exc)
else:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out["torch"] = str(torch.__version__)
        out["cuda_build"] = torch.version.cuda
        available = bool(torch.cuda.is_available())
        out["cuda_available"] = available
        devices = []
        for i in range(torch.cuda.device_count() if available else 0):
            p = torch.cuda.get_device_properties(i)
            bus = None
            if getattr(p, "pci_bus_id", None) is not None:
                bus = "%08x:%02x:%02x.0" % (
                    getattr(p, "pci_domain_id", 0), p.pci_bus_id, getattr(p, "pci_device_id", 0)
                )
            devices.append({"index": i, "name": p.name, "capability": [p.major, p.minor],
                            "memory_bytes": int(p.total_memory), "pci_bus_id": bus})
        out["devices"] = devices
        nccl = None
        if available:
            try:
                v = torch.cuda.nccl.version()
                nccl = ".".join(str(x) for x in v) if isinstance(v, tuple) else str(v)
            except Exception:
                pass
        out["nccl"] = nccl
        dist = torch.distributed
        out["gloo"] = bool(dist.is_available() and dist.is_gloo_available())
        out["warnings"] = [str(w.message).splitlines()[0] for w in caught][:5]
sys.stdout.write("%s%s\n" % (sys.argv[1], json.dumps(out)))
"""


def _probe(python: str, timeout_s: float) -> dict[str, Any]:
    """The child's JSON answer, or {"error": ...} when it did not give one."""
    try:
        proc = subprocess.run(
            [python, "-c", _SNIPPET, _MARK],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout_s,
            text=True,
        )
    except subprocess.TimeoutExpired:
        return {
            "error": f"importing torch and initialising CUDA in {python} did not finish within "
            f"{timeout_s:g} s (a GPU in a bad state? see the kernel log: dcctl check)"
        }
    except OSError as exc:
        return {"error": f"cannot start {python}: {exc.strerror or exc}"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(_MARK):
            try:
                answer = json.loads(line[len(_MARK) :])
            except ValueError:
                break
            if isinstance(answer, dict):
                return answer
            break
    tail = [line for line in proc.stderr.strip().splitlines() if line.strip()][-1:]
    why = tail[0] if tail else f"exit status {proc.returncode}"
    return {"error": f"{python} crashed while importing torch: {why}"}


def _judge(answer: dict[str, Any], python: str, gpus: list[dict[str, Any]], driver: Any) -> str:
    """The one error that keeps torch benchmarks from running on this node, or ''."""
    if "error" in answer:
        return str(answer["error"])
    if "import_error" in answer:
        build = "a CUDA build matching the driver" if gpus else "the CPU build"
        return (
            f"torch cannot be imported by {python} ({answer['import_error']}); install it: "
            f"{python} -m pip install torch ({build}, see {TORCH_INSTALL_URL})"
        )
    if not gpus:
        if not answer.get("gloo"):
            return f"torch {answer.get('torch')} in {python} has no gloo backend"
        return ""
    version = answer.get("torch")
    if not answer.get("cuda_build"):
        return (
            f"{python} has torch {version}, a CPU-only build, on a node with {len(gpus)} NVIDIA "
            f"GPU(s): install a CUDA build that driver {driver} supports ({TORCH_INSTALL_URL})"
        )
    if not answer.get("cuda_available"):
        said = "; ".join(answer.get("warnings") or []) or "torch.cuda.is_available() is False"
        return (
            f"torch {version} (CUDA {answer['cuda_build']}) in {python} cannot use the GPUs: "
            f"{said} (driver {driver}: a torch built for a newer CUDA than the driver supports "
            "needs a newer driver or an older CUDA build)"
        )
    seen = len(answer.get("devices") or [])
    if seen < len(gpus):
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        hint = f" (CUDA_VISIBLE_DEVICES={visible})" if visible is not None else ""
        return f"torch sees {seen} of the {len(gpus)} GPUs NVML sees{hint}"
    return ""


def run_preflight(
    gpus: list[dict[str, Any]],
    driver: str | None,
    python: str | None = None,
    timeout_s: float = PREFLIGHT_TIMEOUT_S,
) -> dict[str, Any]:
    """{python, torch, cuda, nccl, devices, device ('cuda'|'cpu'), error (or None)}.

    `gpus` are NVML's (dcctl.node.probes.gpu): torch must see every one of them."""
    interpreter = python or sys.executable
    answer = _probe(interpreter, timeout_s)
    error = _judge(answer, interpreter, gpus, driver)
    return {
        "python": interpreter,
        "torch": answer.get("torch"),
        "cuda": answer.get("cuda_build"),
        "nccl": answer.get("nccl"),
        "devices": answer.get("devices") or [],
        "device": "cuda" if gpus else "cpu",
        "gpus": len(gpus),
        "error": error or None,
    }
