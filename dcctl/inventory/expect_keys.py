"""Every key an inventory may set under `expect`: its kind, default, group and meaning.

This table is the one place a key is declared. The inventory validator refuses a key not in
it and checks each value against its kind; `inventories/example-rack.yaml` shows every key
with its default (a test holds it to this table); the evaluators read each value through
`Expectations`, which gives the typed value or the default.

A key with no default that the inventory leaves unset is not judged, unless its description
names the rule its evaluator applies instead (warn near the GPU's slowdown temperature).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from dcctl.inventory import expect_kinds as kinds
from dcctl.inventory.expect_kinds import BadExpectation, Kind, coerce, typed

__all__ = [
    "DEFAULTS",
    "EXPECT_KEYS",
    "HEALTH_DEFAULTS",
    "BadExpectation",
    "ExpectKey",
    "Expectations",
    "expectations",
    "value",
]

Group = Literal["check", "gpu health", "node health", "bench"]
GROUPS: tuple[Group, ...] = ("check", "gpu health", "node health", "bench")


@dataclass(frozen=True)
class ExpectKey:
    """One `expect` key. `default` None: no default (see the module's docstring)."""

    name: str
    kind: Kind
    group: Group
    description: str
    default: Any = None

    def typed(self, plain: Any) -> Any:
        """The value an evaluator reads, from the plain validated value."""
        return None if plain is None else typed(self.kind, plain)


_TABLE: tuple[ExpectKey, ...] = (
    # Judged where the inventory sets them.
    ExpectKey("os", kinds.GLOB, "check", "glob on PRETTY_NAME in os-release, e.g. 'Ubuntu 22.04*'"),
    ExpectKey("kernel", kinds.VERSION, "check", "kernel version, e.g. '>=5.15'"),
    ExpectKey("driver", kinds.VERSION, "check", "NVIDIA driver version, e.g. '>=550.54'"),
    ExpectKey("cuda", kinds.VERSION, "check", "CUDA version the driver supports, e.g. '>=12.4'"),
    ExpectKey("gpu_count", kinds.COUNT, "check", "GPUs NVML must see"),
    ExpectKey("gpu_model", kinds.GLOB, "check", "glob on every GPU's name, e.g. '*H100*'"),
    ExpectKey("min_memory_gb", kinds.AMOUNT, "check", "least total host memory, GiB"),
    ExpectKey("swap", kinds.ON_OFF, "check", "whether swap is on"),
    ExpectKey(
        "mounts", kinds.MOUNT_POINTS, "check", "mount points that must be mounted and writable"
    ),
    ExpectKey("ib_ports", kinds.COUNT, "check", "least InfiniBand ports in state ACTIVE"),
    ExpectKey("ib_rate", kinds.POSITIVE_COUNT, "check", "Gb/s every InfiniBand port must run at"),
    ExpectKey("nvme_count", kinds.COUNT, "check", "local NVMe controllers"),
    ExpectKey("min_scratch_free_gb", kinds.AMOUNT, "check", "least free GiB in scratch_dir"),
    # GPU health: judged on every node with GPUs.
    ExpectKey(
        "vbios_uniform", kinds.BOOL, "gpu health", "one VBIOS version across a node's GPUs", True
    ),
    ExpectKey("persistence_mode", kinds.ON_OFF_ANY, "gpu health", "persistence mode", "on"),
    ExpectKey("mig_mode", kinds.ON_OFF_ANY, "gpu health", "MIG mode", "off"),
    ExpectKey(
        "max_gpu_processes", kinds.COUNT, "gpu health", "compute processes on an idle node", 0
    ),
    ExpectKey("ecc", kinds.ON_OFF_ANY, "gpu health", "ECC mode", "on"),
    ExpectKey(
        "max_ecc_correctable",
        kinds.COUNT,
        "gpu health",
        "volatile correctable ECC errors per GPU before a warning",
        100,
    ),
    ExpectKey(
        "max_pcie_replays", kinds.COUNT, "gpu health", "PCIe replays per GPU before a warning", 100
    ),
    ExpectKey(
        "max_gpu_temp_c",
        kinds.AMOUNT,
        "gpu health",
        "GPU temperature that fails, C (unset: warn within 5 C of the GPU's slowdown)",
    ),
    ExpectKey(
        "max_power_fraction",
        kinds.AMOUNT,
        "gpu health",
        "power draw as a fraction of the enforced limit before a warning",
        1.0,
    ),
    ExpectKey(
        "nvlink_links",
        kinds.COUNT,
        "gpu health",
        "active NVLink links per GPU (unset: every populated link)",
    ),
    ExpectKey(
        "max_nvlink_replay", kinds.COUNT, "gpu health", "NVLink replays per link: warn above", 100
    ),
    ExpectKey(
        "max_nvlink_recovery",
        kinds.COUNT,
        "gpu health",
        "NVLink recoveries per link: warn above",
        10,
    ),
    ExpectKey(
        "max_nvlink_crc", kinds.COUNT, "gpu health", "NVLink CRC errors per link: warn above", 100
    ),
    ExpectKey(
        "fabric_manager",
        kinds.MODE,
        "gpu health",
        "nvidia-fabricmanager: 'auto' is required with NVSwitches",
        "auto",
    ),
    # Node health: the kernel log, kernel modules, InfiniBand counters.
    ExpectKey(
        "xid_window_h", kinds.POSITIVE_AMOUNT, "node health", "hours of kernel log searched", 24
    ),
    ExpectKey("ignore_xids", kinds.XID_LIST, "node health", "XIDs never reported", []),
    ExpectKey(
        "xid_status",
        kinds.XID_STATUS_MAP,
        "node health",
        "per-XID override of the status NVIDIA's Xid catalog gives it, e.g. {63: fail, 13: ignore}",
        {},
    ),
    ExpectKey(
        "nvidia_peermem",
        kinds.MODE,
        "node health",
        "nvidia_peermem module: 'auto' is required with GPUs and InfiniBand",
        "auto",
    ),
    ExpectKey(
        "max_ib_link_downed",
        kinds.COUNT,
        "node health",
        "InfiniBand link_downed counter per port before a warning",
        0,
    ),
    # Benchmarks: judged by `dcctl bench`; a figure with no threshold is reported, not judged.
    ExpectKey(
        "gemm_min_efficiency",
        kinds.FRACTION,
        "bench",
        "bf16 GEMM TFLOP/s as a fraction of the GPU model's dense peak (where the peak is known)",
        0.70,
    ),
    ExpectKey("gemm_min_tflops_bf16", kinds.AMOUNT, "bench", "bf16 GEMM TFLOP/s per GPU"),
    ExpectKey("gemm_min_tflops_fp16", kinds.AMOUNT, "bench", "fp16 GEMM TFLOP/s per GPU"),
    ExpectKey("gemm_min_tflops_tf32", kinds.AMOUNT, "bench", "tf32 GEMM TFLOP/s per GPU"),
    ExpectKey("gemm_min_tflops_fp32", kinds.AMOUNT, "bench", "fp32 GEMM TFLOP/s per GPU"),
    ExpectKey("gemm_min_tflops_fp8", kinds.AMOUNT, "bench", "fp8 GEMM TFLOP/s per GPU"),
    ExpectKey(
        "gemm_max_gpu_spread",
        kinds.FRACTION,
        "bench",
        "how far the slowest GPU may fall below the node's median GEMM before a warning",
        0.10,
    ),
    ExpectKey(
        "soak_max_throughput_drop",
        kinds.FRACTION,
        "bench",
        "how far the last soak window may fall below the first before a warning",
        0.10,
    ),
    ExpectKey(
        "allreduce_min_busbw_gbs",
        kinds.AMOUNT,
        "bench",
        "allreduce bus bandwidth at the largest message size, GB/s (10^9 B/s) "
        "(unset: a default per GPU model and count where one is known)",
    ),
    ExpectKey(
        "allreduce_cluster_min_busbw_gbs",
        kinds.AMOUNT,
        "bench",
        "allreduce bus bandwidth across a group's nodes at the largest size, GB/s",
    ),
    ExpectKey(
        "allreduce_pair_min_busbw_gbs",
        kinds.AMOUNT,
        "bench",
        "allreduce bus bandwidth of each pair of nodes, GB/s "
        "(unset: 0.8 x the median of the first pass's pairs)",
    ),
    ExpectKey(
        "fio_min_seqread_mb_s", kinds.AMOUNT, "bench", "fio sequential read, MB/s (10^6 B/s)"
    ),
    ExpectKey(
        "fio_min_seqwrite_mb_s", kinds.AMOUNT, "bench", "fio sequential write, MB/s (10^6 B/s)"
    ),
    ExpectKey("fio_min_randread_iops", kinds.AMOUNT, "bench", "fio random read IOPS"),
    ExpectKey("fio_min_randwrite_iops", kinds.AMOUNT, "bench", "fio random write IOPS"),
    ExpectKey("fio_max_randread_p99_us", kinds.AMOUNT, "bench", "fio random read p99 latency, µs"),
    # `dcctl certify`: a group is judged by the strictest value among its hosts.
    ExpectKey(
        "certify_max_straggler",
        kinds.FRACTION,
        "bench",
        "how far a rank's median local step time may sit above the median of all ranks",
        0.10,
    ),
    ExpectKey(
        "certify_min_mfu",
        kinds.FRACTION,
        "bench",
        "certify job's model FLOP/s as a fraction of its GPUs' dense bf16 peak (where known)",
        0.30,
    ),
    ExpectKey("certify_min_samples_per_s", kinds.AMOUNT, "bench", "certify job's samples/s"),
    ExpectKey(
        "certify_max_final_loss",
        kinds.AMOUNT,
        "bench",
        "certify job's final loss (unset: the target the worker sets for its model)",
    ),
    # Across runs and hosts: a figure against the host's own history, and against its fleet.
    ExpectKey(
        "baseline_runs",
        kinds.POSITIVE_COUNT,
        "bench",
        "a figure's baseline: the median of its last N passing runs on the host",
        5,
    ),
    ExpectKey(
        "baseline_long_days",
        kinds.AMOUNT,
        "bench",
        "also judge a figure against its N passing runs at least this many days old, so a slow "
        "decline is caught (0: recent runs only)",
        28,
    ),
    ExpectKey(
        "regression_max_drop",
        kinds.FRACTION,
        "bench",
        "how far a figure may fall below its baseline (rise, for latencies) before a finding",
        0.05,
    ),
    ExpectKey(
        "regression_fail",
        kinds.BOOL,
        "bench",
        "whether a figure past regression_max_drop fails the host instead of warning",
        False,
    ),
    ExpectKey(
        "outlier_min_spread",
        kinds.FRACTION,
        "bench",
        "how far a host's figure may sit from the median of its GPU model's hosts, as a "
        "fraction of the median, before a warning (at least 3 MADs either way)",
        0.10,
    ),
)

EXPECT_KEYS: Mapping[str, ExpectKey] = {key.name: key for key in _TABLE}

# Every default, and those `dcctl check` judges by: the plain values an inventory would hold.
DEFAULTS: Mapping[str, Any] = {k.name: k.default for k in _TABLE if k.default is not None}
HEALTH_DEFAULTS: Mapping[str, Any] = {
    name: default
    for name, default in DEFAULTS.items()
    if EXPECT_KEYS[name].group in ("gpu health", "node health")
}


class Expectations:
    """A host's `expect` read through the table: the typed value of each key, else its
    default, else None (not judged).

    Values that came through the inventory are valid already; any other (a dict built in
    code, JSON) is checked here under the same rules, and a bad one raises BadExpectation
    only where a check reads it, so it costs that one check, not the host.
    """

    def __init__(self, expect: Mapping[str, Any]) -> None:
        self._typed: dict[str, Any] = {}
        self._bad: dict[str, BadExpectation] = {}
        self.unknown: dict[str, Any] = {}
        self.given: dict[str, Any] = {}
        for name, plain in expect.items():
            key = EXPECT_KEYS.get(name)
            if key is None:
                self.unknown[name] = plain
            elif plain is not None:  # null unsets: the default applies
                self.given[name] = plain
                self._read(key, plain)

    def _read(self, key: ExpectKey, plain: Any) -> None:
        try:
            self._typed[key.name] = key.typed(coerce(key.kind, plain, key.name))
        except BadExpectation as exc:
            exc.value = plain  # the value as given, for the error result's `expected`
            self._bad[key.name] = exc

    def get(self, name: str) -> Any:
        """The typed value of `name`, its default when unset, or None (no judgement)."""
        if name in self._bad:
            raise self._bad[name]
        if name in self._typed:
            return self._typed[name]
        key = EXPECT_KEYS[name]  # a name not in the table is a mistake in the caller
        # A fresh copy: a default list or mapping is never shared with an evaluator.
        return key.typed(coerce(key.kind, key.default, name)) if key.default is not None else None


def expectations(expect: Mapping[str, Any] | Expectations) -> Expectations:
    """`expect` read through the table; an Expectations is returned as it is."""
    return expect if isinstance(expect, Expectations) else Expectations(expect)


def value(expect: Mapping[str, Any] | Expectations, name: str) -> Any:
    """One key's typed value, its default, or None; BadExpectation for a malformed one."""
    return expectations(expect).get(name)
