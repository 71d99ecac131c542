"""GEMM benchmark, pure parts: the worker's parameters and command line, the node summary of its
rank files (summarize_gemm), the evaluator, and the dense-peak table's name matching.

Rank documents come from tests/fixtures/bench/gemm/h100x8 (synthetic, shaped like the worker's
output; see the README there); each fault is an overlay applied here.
"""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from dcctl.evaluate.bench_gemm import (
    DEFAULT_MIN_EFFICIENCY,
    GemmLimits,
    evaluate_gemm,
    tflops_text,
)
from dcctl.evaluate.gpu_peaks import PEAKS, dense_peak, model_label
from dcctl.evaluate.result import Result
from dcctl.node.bench.gemm import (
    WORKER_MODULE,
    BadParams,
    gemm_worker_argv,
    summarize_gemm,
    tflops,
    worker_params,
)
from dcctl.node.bench.gemm_worker import _cpu_name, pci_bus_id
from dcctl.node.sysroot import SYSROOT_ENV

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "bench" / "gemm" / "h100x8"
PYTHON_38 = Path("/root/.pyenv/versions/3.8.18/bin/python3.8")


def rank_docs() -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in sorted(FIXTURE.glob("rank-*.json"))]


def result(doc: dict[str, Any], dtype: str) -> dict[str, Any]:
    return next(r for r in doc["results"] if r["dtype"] == dtype)


def by_id(results: list[Result], result_id: str) -> list[Result]:
    return [r for r in results if r.id == result_id]


def only(results: list[Result], result_id: str) -> Result:
    found = by_id(results, result_id)
    assert len(found) == 1, [r.to_json() for r in results]
    return found[0]


def judge(docs: list[dict[str, Any]], **limits: Any) -> list[Result]:
    return evaluate_gemm(summarize_gemm(docs), GemmLimits(**limits))


# --- parameters and command line -----------------------------------------------------------


def base_params(**changes: Any) -> dict[str, Any]:
    params = {"out_dir": "/tmp", "device": "cuda", "dtypes": ["bf16"], "m": 8, "n": 8, "k": 8}
    return {**params, **changes}


def test_worker_params_fill_defaults() -> None:
    params = worker_params(base_params())
    assert params["min_time_s"] == 1.0
    assert params["duration_s"] is None
    assert params["window_s"] == 5.0
    assert params["seed"] == 0


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"dtypes": ["bf16", "int8"]}, "dtypes"),
        ({"dtypes": []}, "dtypes"),
        ({"device": "rocm"}, "device"),
        ({"m": 0}, "m"),
        ({"k": True}, "k"),
        ({"n": 1 << 20}, "n"),
        ({"min_time_s": 0}, "min_time_s"),
        ({"duration_s": -1}, "duration_s"),
        ({"warmup": -1}, "warmup"),
        ({"out_dir": None}, "out_dir"),
    ],
)
def test_worker_params_name_the_bad_one(change: dict[str, Any], named: str) -> None:
    with pytest.raises(BadParams, match=named):
        worker_params(base_params(**change))


def test_argv_single_process_and_torchrun() -> None:
    params = base_params()
    one = gemm_worker_argv("/usr/bin/python3", 1, params)
    assert one[:3] == ["/usr/bin/python3", "-m", WORKER_MODULE]
    assert json.loads(one[3]) == params
    many = gemm_worker_argv("/opt/venv/bin/python", 8, params)
    assert many[:4] == ["/opt/venv/bin/python", "-m", "torch.distributed.run", "--standalone"]
    assert many[4:8] == ["--nproc-per-node", "8", "-m", WORKER_MODULE]
    assert json.loads(many[8]) == params
    assert gemm_worker_argv("python", 0, params)[1:3] == ["-m", WORKER_MODULE]


def test_tflops_formula() -> None:
    # 2*m*n*k per product: 10 products of 8192^3 in 1.4 s.
    assert tflops(8192, 8192, 8192, 10, 1.4) == pytest.approx(2 * 8192**3 * 10 / 1.4 / 1e12)
    with pytest.raises(ValueError, match="positive"):
        tflops(1, 1, 1, 1, 0.0)


# --- the worker's device identity (no torch needed) ---------------------------------------


def test_pci_bus_id_in_nvml_spelling_from_torch_ids() -> None:
    properties = SimpleNamespace(pci_domain_id=0, pci_bus_id=0x5D, pci_device_id=0, uuid="x")
    assert pci_bus_id(properties) == "00000000:5D:00.0"


def test_pci_bus_id_found_by_uuid_in_the_driver_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What /proc/driver/nvidia/gpus/<address>/information holds (driver 5xx layout).
    for address, uuid in (("0000:18:00.0", "aaaa"), ("0000:ab:00.0", "58f8b2a4-1c2d")):
        gpu = tmp_path / "proc/driver/nvidia/gpus" / address
        gpu.mkdir(parents=True)
        (gpu / "information").write_text(
            f"Model: \t\t NVIDIA H100 80GB HBM3\nGPU UUID: \t GPU-{uuid}\n"
        )
    monkeypatch.setenv(SYSROOT_ENV, str(tmp_path))
    assert pci_bus_id(SimpleNamespace(uuid="58F8B2A4-1C2D")) == "00000000:AB:00.0"
    assert pci_bus_id(SimpleNamespace(uuid="ffff")) is None
    assert pci_bus_id(SimpleNamespace()) is None


def test_cpu_name_from_cpuinfo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/cpuinfo").write_text(
        "processor\t: 0\nmodel name\t: AMD EPYC 9654 96-Core Processor\n"
    )
    monkeypatch.setenv(SYSROOT_ENV, str(tmp_path))
    assert _cpu_name() == "AMD EPYC 9654 96-Core Processor"


# --- summary -------------------------------------------------------------------------------


def test_summary_of_a_healthy_node() -> None:
    section = summarize_gemm(rank_docs())
    assert [d["dtype"] for d in section["dtypes"]] == ["bf16", "fp32", "fp8"]
    bf16 = section["dtypes"][0]
    assert (bf16["m"], bf16["n"], bf16["k"]) == (8192, 8192, 8192)
    assert len(bf16["gpus"]) == 8
    figures = sorted(g["tflops"] for g in bf16["gpus"])
    assert bf16["median_tflops"] == pytest.approx((figures[3] + figures[4]) / 2)
    assert bf16["slowest"]["rank"] == 3
    assert bf16["slowest"]["pci_bus_id"] == "00000000:5D:00.0"
    assert bf16["slowest"]["vs_median"] == pytest.approx(0.97, abs=0.01)
    assert bf16["checksum_groups"][0]["ranks"] == list(range(8))
    assert section["checksum_mismatches"] == []
    assert section["reference_failures"] == []
    assert section["errors"] == []
    soak = section["soak"]
    assert soak["dtype"] == "bf16"
    assert len(soak["gpus"]) == 8
    assert all(g["checksum_stable"] for g in soak["gpus"])
    assert soak["worst"]["last_vs_first"] == pytest.approx(1 - 0.0008 * 11, abs=1e-3)


def test_summary_is_the_same_under_the_oldest_node_python() -> None:
    if not PYTHON_38.is_file():
        pytest.skip(f"{PYTHON_38} not installed")
    code = (
        "import json, sys; from dcctl.node.bench.gemm import summarize_gemm; "
        "print(json.dumps(summarize_gemm(json.load(sys.stdin)), sort_keys=True))"
    )
    ran = subprocess.run(
        [str(PYTHON_38), "-S", "-c", code],
        input=json.dumps(rank_docs()),
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
        timeout=30,
    )
    assert json.loads(ran.stdout) == json.loads(json.dumps(summarize_gemm(rank_docs())))


def test_summary_names_the_gpu_whose_checksum_differs() -> None:
    docs = rank_docs()
    result(docs[5], "bf16")["checksum"] = "0" * 64
    section = summarize_gemm(docs)
    [mismatch] = section["checksum_mismatches"]
    assert mismatch["rank"] == 5
    assert mismatch["device"] == "cuda:5"
    assert mismatch["pci_bus_id"] == "00000000:AB:00.0"
    assert mismatch["dtype"] == "bf16"
    assert mismatch["majority"] == result(docs[0], "bf16")["checksum"]


def test_checksums_compared_within_one_model_only() -> None:
    docs = rank_docs()[:4]
    for doc in docs[2:]:
        doc["name"] = "NVIDIA H100 PCIe"
        for entry in doc["results"]:
            entry["checksum"] = "f" * 64
    section = summarize_gemm(docs)
    assert section["checksum_mismatches"] == []
    assert len(section["dtypes"][0]["checksum_groups"]) == 2


def test_two_gpus_that_disagree_have_no_majority() -> None:
    docs = rank_docs()[:2]
    result(docs[1], "fp32")["checksum"] = "1" * 64
    mismatches = summarize_gemm(docs)["checksum_mismatches"]
    assert {m["rank"] for m in mismatches} == {0, 1}
    assert all(m["majority"] is None for m in mismatches)


def test_rank_error_passed_through_and_others_kept() -> None:
    docs = rank_docs()
    docs[6] = {"rank": 6, "error": "RuntimeError: CUDA error: an illegal memory access"}
    section = summarize_gemm(docs)
    assert section["errors"] == [
        {"rank": 6, "device": None, "error": "RuntimeError: CUDA error: an illegal memory access"}
    ]
    assert len(section["dtypes"][0]["gpus"]) == 7


def test_summary_survives_malformed_rank_files() -> None:
    docs: list[Any] = rank_docs()[:3]
    docs[1]["results"] = "not a list"
    docs[1]["soak"] = ["not", "a", "soak"]
    docs[2]["results"].append("junk")
    docs[2]["soak"]["windows"].append({"t_s": 60.0, "tflops": "fast"})
    docs.append("not a document")
    section = summarize_gemm(docs)
    assert [g["rank"] for g in section["dtypes"][0]["gpus"]] == [0, 2]
    assert [g["rank"] for g in section["soak"]["gpus"]] == [0, 2]
    assert evaluate_gemm(section)


def test_summary_of_nothing() -> None:
    section = summarize_gemm([])
    assert section["dtypes"] == []
    assert section["soak"] is None


# --- evaluator -----------------------------------------------------------------------------


def test_healthy_node_passes_with_a_readable_message() -> None:
    results = judge(rank_docs())
    bf16 = only(results, "bench.gemm.bf16")
    assert bf16.status == "pass"
    assert bf16.kind == "bench"
    assert bf16.message.startswith("bf16: 781 TFLOP/s per GPU (median of 8), 79% of H100 SXM")
    assert "slowest GPU 3 (00000000:5D:00.0) at 97% of median" in bf16.message
    assert bf16.metrics is not None
    assert bf16.metrics["efficiency"] == pytest.approx(0.79, abs=0.005)
    assert bf16.metrics["tflops"] == pytest.approx(781, abs=0.5)
    assert len(bf16.metrics["tflops_per_gpu"]) == 8
    assert bf16.metrics["peak_tflops"] == 989.5
    assert bf16.to_json()["metrics"] == bf16.metrics
    assert bf16.expected == {"min_efficiency": DEFAULT_MIN_EFFICIENCY["bf16"]}
    fp32 = only(results, "bench.gemm.fp32")
    assert fp32.status == "pass"
    assert "of H100 SXM dense peak" in fp32.message
    assert "no judgement" in fp32.message
    for result_id in ("bench.gemm.checksum", "bench.gemm.reference", "bench.gemm.soak"):
        assert only(results, result_id).status == "pass", result_id
    assert "across the 8 devices" in only(results, "bench.gemm.checksum").message


def test_checksum_mismatch_fails_naming_the_gpu() -> None:
    docs = rank_docs()
    # A corrupting GPU gives the same wrong bits before and during the soak.
    result(docs[5], "bf16")["checksum"] = docs[5]["soak"]["checksum"] = "0" * 64
    [failed] = by_id(judge(docs), "bench.gemm.checksum")
    assert failed.status == "fail"
    assert failed.gpu == {"index": 5, "pci_bus_id": "00000000:AB:00.0", "serial": None}
    assert failed.message.startswith("GPU 5 (00000000:AB:00.0): bf16 result differs bitwise")
    assert "8 NVIDIA H100 80GB HBM3" in failed.message


def test_result_changed_during_soak_fails_checksum() -> None:
    docs = rank_docs()
    docs[2]["soak"]["checksum"] = "e" * 64
    [failed] = by_id(judge(docs), "bench.gemm.checksum")
    assert failed.status == "fail"
    assert "GPU 2 (00000000:3A:00.0): bf16 result changed during the soak" in failed.message


def test_gpu_below_min_efficiency_fails() -> None:
    docs = rank_docs()
    result(docs[4], "bf16")["tflops"] = 512.0
    bf16 = only(judge(docs), "bench.gemm.bf16")
    assert bf16.status == "fail"
    assert bf16.gpu is not None
    assert bf16.gpu["pci_bus_id"] == "00000000:9A:00.0"
    assert "below 70% of peak: GPU 4 (00000000:9A:00.0) at 52%" in bf16.message


def test_min_efficiency_and_tflops_floors_are_per_dtype() -> None:
    # bf16 ~79 % of 989.5, fp32 ~77 % of 67, fp8 ~68 % of 1979.
    strict = judge(rank_docs(), min_efficiency={"bf16": 0.8, "fp8": 0.7})
    assert only(strict, "bench.gemm.bf16").status == "fail"
    assert only(strict, "bench.gemm.fp8").status == "fail"
    assert only(strict, "bench.gemm.fp32").status == "pass"  # no threshold for fp32: not judged
    assert only(strict, "bench.gemm.fp8").expected == {"min_efficiency": 0.7}
    floors = judge(rank_docs(), min_efficiency={}, min_tflops={"fp32": 60.0, "bf16": 700.0})
    fp32 = only(floors, "bench.gemm.fp32")
    assert fp32.status == "fail"
    assert "below 60.0 TFLOP/s: GPU 3 (00000000:5D:00.0) at 50.8, " in fp32.message
    assert fp32.expected == {"min_tflops": 60.0}
    assert only(floors, "bench.gemm.bf16").status == "pass"


def test_slowest_gap_is_judged_when_given() -> None:
    assert only(judge(rank_docs(), max_gpu_spread=0.05), "bench.gemm.bf16").status == "pass"
    tight = only(judge(rank_docs(), max_gpu_spread=0.02), "bench.gemm.bf16")
    assert tight.status == "fail"
    assert tight.gpu is not None and tight.gpu["index"] == 3
    assert "more than 2% below the median" in tight.message
    assert tight.expected == {"min_efficiency": 0.7, "max_slowest_gap": 0.02}
    soak = only(judge(rank_docs(), max_soak_drop=0.0), "bench.gemm.soak")
    assert soak.expected == {"min_last_vs_first": 1.0}


def test_reference_failure_fails_naming_the_gpu() -> None:
    docs = rank_docs()
    entry = result(docs[7], "fp8")
    entry.update(ref_max_rel_err=0.41, ref_ok=False)
    result(docs[1], "fp32").update(ref_max_rel_err=None, ref_ok=False)
    failed = by_id(judge(docs), "bench.gemm.reference")
    assert [f.status for f in failed] == ["fail", "fail"]
    messages = " | ".join(f.message for f in failed)
    assert "GPU 7 (00000000:DB:00.0): fp8 result is off by 0.41" in messages
    assert "GPU 1 (00000000:2A:00.0): fp32 result holds inf or NaN" in messages


def test_rank_error_is_an_error_result_naming_the_rank() -> None:
    docs = rank_docs()
    docs[6] = {"rank": 6, "error": "RuntimeError: CUDA error: an illegal memory access"}
    results = judge(docs)
    [error] = by_id(results, "bench.gemm.worker")
    assert error.status == "error"
    assert error.message == (
        "GEMM worker rank 6 failed: RuntimeError: CUDA error: an illegal memory access"
    )
    assert "median of 7" in only(results, "bench.gemm.bf16").message


def test_soak_drop_and_throttling_warn() -> None:
    docs = rank_docs()
    windows = docs[6]["soak"]["windows"]
    windows[-1]["tflops"] = windows[0]["tflops"] * 0.8
    soak = only(judge(docs), "bench.gemm.soak")
    assert soak.status == "warn"
    assert soak.gpu is not None and soak.gpu["index"] == 6
    assert "GPU 6 (00000000:BA:00.0) fell to 80% of its first window" in soak.message
    section = summarize_gemm(rank_docs())
    section["nvml_samples"] = {"throttled": {"6": ["hw_thermal", "sw_power_cap"]}}
    throttled = only(evaluate_gemm(section), "bench.gemm.soak")
    assert throttled.status == "warn"
    assert "throttling reported: GPU 6: hw_thermal, sw_power_cap" in throttled.message


def test_unknown_model_is_reported_not_judged() -> None:
    docs = rank_docs()
    for doc in docs:
        doc["name"] = "NVIDIA H100"  # no form factor: no peak to judge against
    bf16 = only(judge(docs), "bench.gemm.bf16")
    assert bf16.status == "pass"
    assert "no bf16 dense peak known for NVIDIA H100" in bf16.message
    assert bf16.metrics is not None
    assert "efficiency" not in bf16.metrics
    assert bf16.expected is None


def cpu_docs() -> list[dict[str, Any]]:
    docs = []
    for rank, figure in enumerate((0.0214, 0.0209)):
        doc = copy.deepcopy(rank_docs()[rank])
        doc.update(device="cpu", name="AMD EPYC", pci_bus_id=None, soak=None)
        fp32 = result(doc, "fp32")
        fp32.update(tflops=figure, m=256, n=256, k=256)
        skipped = [{"dtype": d, "skipped": "on CPU only fp32 is measured"} for d in ("bf16",)]
        doc["results"] = [*skipped, fp32]
        docs.append(doc)
    return docs


def test_cpu_results_are_labelled_cpu_and_not_judged() -> None:
    results = judge(cpu_docs())
    fp32 = only(results, "bench.gemm.fp32")
    assert fp32.status == "pass"
    assert fp32.message.startswith(
        "fp32 on CPU (AMD EPYC): 0.0211 TFLOP/s per process (median of 2), no peak for CPUs"
    )
    assert "slowest CPU rank 1 at 99% of median" in fp32.message
    assert fp32.gpu is None
    bf16 = only(results, "bench.gemm.bf16")
    assert bf16.status == "skip"
    assert bf16.message == "bf16 not measured: on CPU only fp32 is measured"
    assert only(results, "bench.gemm.checksum").status == "pass"


def test_one_device_has_nothing_to_compare() -> None:
    checksum = only(judge(cpu_docs()[:1]), "bench.gemm.checksum")
    assert checksum.status == "skip"


def test_no_figures_and_no_error_is_an_error() -> None:
    [found] = evaluate_gemm(summarize_gemm([]))
    assert found.status == "error"


@pytest.mark.parametrize(
    ("value", "text"), [(781.24, "781"), (1342.0, "1,342"), (51.43, "51.4"), (0.02143, "0.0214")]
)
def test_tflops_text(value: float, text: str) -> None:
    assert tflops_text(value) == text


# --- dense peaks ---------------------------------------------------------------------------

# Real names as NVML / torch.cuda.get_device_name() report them, each with where it was seen:
REAL_NAMES = [
    # tests/fixtures/nvml/healthy-h100.json; pytorch/test-infra#7631 (nvidia-smi --query-gpu=name
    # returns "NVIDIA H100 80GB HBM3" and "NVIDIA B200", like PyTorch); vllm-project/vllm#6408.
    ("NVIDIA H100 80GB HBM3", "H100 SXM"),
    ("NVIDIA B200", "B200"),
    # neuralinternet/SN27#291 (a list of NVML names: H200, H100 80GB HBM3, H100 PCIe,
    # A100-SXM4-80GB); tests/fixtures/nvml/h200-live.json (an H200 SXM node, driver 580).
    ("NVIDIA H100 PCIe", "H100 PCIe"),
    ("NVIDIA A100-SXM4-80GB", "A100 SXM"),
    ("NVIDIA H200", "H200 SXM"),
    # wilicc/gpu-burn#141: nvidia-smi table of 4x "NVIDIA H100 NVL", 400 W, 95830 MiB.
    ("NVIDIA H100 NVL", "H100 NVL"),
    # marin-community/marin#5446: nvidia-smi on CoreWeave gd-1xgh200 reports this.
    ("NVIDIA GH200 480GB", "GH200"),
    # mosaicml/composer#2265 ("torch.cuda.get_device_name() ex output: 'NVIDIA A100-SXM4-40GB'").
    ("NVIDIA A100-SXM4-40GB", "A100 SXM"),
    # vectorch-ai/ScaleLLM#288 (collect_env: "GPU 0: NVIDIA A100 80GB PCIe").
    ("NVIDIA A100 80GB PCIe", "A100 PCIe"),
    # isaac-sim/IsaacSim#228 (nvidia-smi -q: "Product Name : NVIDIA L40S").
    ("NVIDIA L40S", "L40S"),
    # GoogleCloudPlatform/pubsec-declarative-toolkit#655 (nvidia-smi on G2 VMs: "NVIDIA L4").
    ("NVIDIA L4", "L4"),
    # karpathy/llm.c#621 (mfu.h gpu_db entry "NVIDIA A10", from the A10 datasheet).
    ("NVIDIA A10", "A10"),
    # sgl-project/sglang#24834 ("GPU 0,1,2,3,4,5,6,7: NVIDIA B200").
    ("NVIDIA B200", "B200"),
    # pytorch/pytorch#130181 lists the parent of MIG devices as "NVIDIA A100-SXM4-80GB";
    # Volta names keep the Tesla brand: karpathy/llm.c#621 ("Tesla V100-SXM2-16GB",
    # "Tesla V100-PCIE-32GB").
    ("Tesla V100-SXM2-16GB", "V100 SXM2"),
    ("Tesla V100-PCIE-32GB", "V100 PCIe"),
]


@pytest.mark.parametrize(("name", "label"), REAL_NAMES)
def test_real_names_map_to_their_model_and_form_factor(name: str, label: str) -> None:
    assert model_label(name) == label


@pytest.mark.parametrize(
    "name",
    [
        # NVIDIA/cosmos-framework#114: torch.cuda.get_device_name() on a B300 node; not a B200.
        "NVIDIA B300 SXM6 AC",
        # karpathy/autoresearch#270 lists the A10G (AWS g5) beside the A10: a different part.
        "NVIDIA A10G",
        # pytorch/pytorch#75198: torch's name for a GPU its driver did not know yet.
        "NVIDIA Graphics Device",
        # A MIG slice has a fraction of the SMs; a bare model gives no form factor.
        "NVIDIA A100-SXM4-80GB MIG 3g.40gb",
        "NVIDIA H100",
        "AMD Instinct MI300X OAM",
        "",
    ],
)
def test_names_without_a_known_peak(name: str) -> None:
    assert model_label(name) is None
    assert dense_peak(name, "bf16") is None


def test_dense_figures_not_sparsity_figures() -> None:
    # MEASUREMENTS.md: H100 SXM bf16 989 (dense), tf32 494.5, fp32 67, fp8 1979; A100 312/156.
    assert dense_peak("NVIDIA H100 80GB HBM3", "bf16") == 989.5
    assert dense_peak("NVIDIA H100 80GB HBM3", "tf32") == 494.5
    assert dense_peak("NVIDIA H100 80GB HBM3", "fp32") == 67.0
    assert dense_peak("NVIDIA H100 80GB HBM3", "fp8") == 1979.0
    assert dense_peak("NVIDIA H200", "bf16") == dense_peak("NVIDIA H100 80GB HBM3", "bf16")
    assert dense_peak("NVIDIA A100-SXM4-80GB", "bf16") == 312.0
    assert dense_peak("NVIDIA A100-SXM4-80GB", "tf32") == 156.0
    assert dense_peak("NVIDIA B200", "bf16") == 2250.0
    assert dense_peak("NVIDIA H100 PCIe", "bf16") == 756.5
    assert dense_peak("NVIDIA H100 NVL", "bf16") == 835.5


def test_no_fp8_before_ada_and_hopper() -> None:
    assert dense_peak("NVIDIA A100-SXM4-80GB", "fp8") is None
    assert dense_peak("NVIDIA A10", "fp8") is None
    assert dense_peak("NVIDIA L4", "fp8") == 242.5
    assert dense_peak("Tesla V100-SXM2-16GB", "bf16") is None
    assert dense_peak("NVIDIA H100 80GB HBM3", "int8") is None


def test_every_row_is_consistent() -> None:
    for peak in PEAKS.values():
        # Tensor-core fp16/bf16 run at twice tf32 and half fp8 on every generation here.
        if peak.tf32 is not None:
            assert peak.fp16 == pytest.approx(2 * peak.tf32, rel=0.03), peak.label
        if peak.fp8 is not None:
            assert peak.fp8 == pytest.approx(2 * peak.fp16, rel=0.03), peak.label
        assert peak.fp32 < peak.fp16, peak.label
