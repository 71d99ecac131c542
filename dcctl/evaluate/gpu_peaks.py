"""Dense peak TFLOP/s per GPU model and form factor, and the NVML names that map to them.

Every figure is NVIDIA's datasheet number for dense math: datasheets print the tensor-core
figures "with sparsity" (2:4 structured), so those are halved here, and a GEMM's efficiency is
measured against the dense figure. fp32 is the non-tensor (CUDA core) figure, which is what an
fp32 GEMM with TF32 off runs on. fp8 is None on GPUs without fp8 tensor cores (before Ada and
Hopper). Form factors differ in clocks and power, so an H100 PCIe is judged against its own
peak, not the SXM one.

Names are matched on what NVML and torch.cuda.get_device_name() report ("NVIDIA H100 80GB
HBM3", "NVIDIA A100-SXM4-80GB", "NVIDIA GH200 480GB"); a name whose form factor cannot be told
(a bare "NVIDIA H100"), a MIG slice, or a model not in the table has no peak, so it is reported
and not judged.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

DTYPES = ("bf16", "fp16", "tf32", "fp32", "fp8")


@dataclass(frozen=True)
class DensePeaks:
    """One model and form factor: dense TFLOP/s per dtype (None: no such tensor-core mode)."""

    label: str
    bf16: float | None
    fp16: float
    tf32: float | None
    fp32: float
    fp8: float | None

    def get(self, dtype: str) -> float | None:
        value: float | None = getattr(self, dtype) if dtype in DTYPES else None
        return value


# Datasheets: the figure after "|" is the datasheet's own (sparse) number where it prints one.
PEAKS: dict[str, DensePeaks] = {
    peak.label: peak
    for peak in (
        # NVIDIA A100 Tensor Core GPU datasheet (nvidia-a100-datasheet-us-2188504): BF16/FP16
        # 312 | 624*, TF32 156 | 312*, FP32 19.5, for both SXM and PCIe (40 and 80 GB).
        DensePeaks("A100 SXM", 312.0, 312.0, 156.0, 19.5, None),
        DensePeaks("A100 PCIe", 312.0, 312.0, 156.0, 19.5, None),
        # NVIDIA H100 Tensor Core GPU datasheet: SXM BF16/FP16 1,979*, TF32 989*, FP32 67,
        # FP8 3,958*; PCIe 1,513*, 756*, 51, 3,026*; NVL (per GPU, 2024 revision) 1,671*,
        # 835*, 60, 3,341*. MEASUREMENTS.md agrees for SXM (989 / 494.5 / 67 / 1979).
        DensePeaks("H100 SXM", 989.5, 989.5, 494.5, 67.0, 1979.0),
        DensePeaks("H100 PCIe", 756.5, 756.5, 378.0, 51.0, 1513.0),
        DensePeaks("H100 NVL", 835.5, 835.5, 417.5, 60.0, 1670.5),
        # NVIDIA H200 Tensor Core GPU datasheet: SXM as H100 SXM (1,979*, 989*, 67, 3,958*);
        # NVL 1,671*, 835*, 60, 3,341*.
        DensePeaks("H200 SXM", 989.5, 989.5, 494.5, 67.0, 1979.0),
        DensePeaks("H200 NVL", 835.5, 835.5, 417.5, 60.0, 1670.5),
        # NVIDIA GH200 Grace Hopper Superchip datasheet: the Hopper GPU's 1,979*, 989*, 67,
        # 3,958*, the same as H100 SXM.
        DensePeaks("GH200", 989.5, 989.5, 494.5, 67.0, 1979.0),
        # NVIDIA HGX B200 datasheet, per GPU: FP16/BF16 4.5 PF*, TF32 2.2 PF*, FP32 75 TF,
        # FP8 9 PF*. (Earlier Blackwell material gave 80 TF FP32 and 1.125 PF TF32 dense, the
        # figures in MEASUREMENTS.md; the HGX datasheet's are the ones a buyer is quoted.)
        DensePeaks("B200", 2250.0, 2250.0, 1100.0, 75.0, 4500.0),
        # NVIDIA GB200 NVL72 datasheet, per GPU: FP16/BF16 5 PF*, TF32 2.5 PF*, FP32 80 TF,
        # FP8 10 PF*.
        DensePeaks("GB200", 2500.0, 2500.0, 1250.0, 80.0, 5000.0),
        # NVIDIA L40S datasheet: BF16/FP16 362.05 | 733*, TF32 183 | 366*, FP32 91.6,
        # FP8 733 | 1,466*.
        DensePeaks("L40S", 362.05, 362.05, 183.0, 91.6, 733.0),
        # NVIDIA L40 datasheet: BF16/FP16 181.05 | 362.1*, TF32 90.5 | 181*, FP32 90.5,
        # FP8 362 | 724*.
        DensePeaks("L40", 181.05, 181.05, 90.5, 90.5, 362.0),
        # NVIDIA L4 Tensor Core GPU datasheet: BF16/FP16 242*, TF32 120*, FP32 30.3,
        # FP8 485*.
        DensePeaks("L4", 121.0, 121.0, 60.0, 30.3, 242.5),
        # NVIDIA A10 Tensor Core GPU datasheet: BF16/FP16 125 | 250*, TF32 62.5 | 125*,
        # FP32 31.2.
        DensePeaks("A10", 125.0, 125.0, 62.5, 31.2, None),
        # NVIDIA A30 Tensor Core GPU datasheet: BF16/FP16 165 | 330*, TF32 82 | 165*,
        # FP32 10.3.
        DensePeaks("A30", 165.0, 165.0, 82.0, 10.3, None),
        # NVIDIA A40 datasheet: BF16/FP16 149.7 | 299.4*, TF32 74.8 | 149.6*, FP32 37.4.
        DensePeaks("A40", 149.7, 149.7, 74.8, 37.4, None),
        # NVIDIA Tesla V100 datasheet: Tensor (FP16) 125 SXM2 / 112 PCIe, FP32 15.7 / 14;
        # Volta has no BF16, TF32 or FP8 tensor cores.
        DensePeaks("V100 SXM2", None, 125.0, None, 15.7, None),
        DensePeaks("V100 PCIe", None, 112.0, None, 14.0, None),
    )
}


def _has_form(qualifiers: list[str], prefix: str) -> bool:
    return any(word.startswith(prefix) for word in qualifiers)


def _h100(q: list[str]) -> str | None:
    if "NVL" in q:
        return "H100 NVL"
    if "PCIE" in q:
        return "H100 PCIe"
    # The SXM5 part reports "NVIDIA H100 80GB HBM3"; the PCIe and NVL parts say so by name.
    return "H100 SXM" if "HBM3" in q or _has_form(q, "SXM") else None


def _a100(q: list[str]) -> str | None:
    if "PCIE" in q:
        return "A100 PCIe"
    return "A100 SXM" if _has_form(q, "SXM") else None


def _v100(q: list[str]) -> str | None:
    if "PCIE" in q:
        return "V100 PCIe"
    return "V100 SXM2" if _has_form(q, "SXM") else None


# The model word of a name (the first after the vendor) and how the rest picks a table row.
_MODELS: dict[str, Callable[[list[str]], str | None]] = {
    "H100": _h100,
    "H200": lambda q: "H200 NVL" if "NVL" in q else "H200 SXM",
    "GH200": lambda q: "GH200",
    "A100": _a100,
    "B200": lambda q: "B200",
    "GB200": lambda q: "GB200",
    "L40S": lambda q: "L40S",
    "L40": lambda q: "L40",
    "L4": lambda q: "L4",
    "A10": lambda q: "A10",
    "A30": lambda q: "A30",
    "A40": lambda q: "A40",
    "V100": _v100,
}

_VENDOR_WORDS = {"NVIDIA", "TESLA"}


def model_label(gpu_name: str) -> str | None:
    """The table row for a GPU name ("H100 SXM"), or None when it is not known for sure."""
    words = [w for w in re.split(r"[^A-Z0-9]+", gpu_name.upper()) if w]
    while words and words[0] in _VENDOR_WORDS:
        words.pop(0)
    # A MIG slice has a fraction of the GPU's SMs, so the whole GPU's peak does not apply.
    if not words or "MIG" in words:
        return None
    pick = _MODELS.get(words[0])
    return pick(words[1:]) if pick else None


def dense_peak(gpu_name: str, dtype: str) -> float | None:
    """Dense peak TFLOP/s of this GPU for a dtype (bf16, fp16, tf32, fp32, fp8), or None."""
    label = model_label(gpu_name)
    return PEAKS[label].get(dtype) if label else None
