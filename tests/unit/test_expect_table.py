"""The expect table: one declaration per key, read alike by the inventory, the example
inventory, `Expectations` and the check registries."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from dcctl.errors import InputError
from dcctl.evaluate import check, io_health, node_health
from dcctl.evaluate.gpu_health import CHECKS as GPU_CHECKS
from dcctl.evaluate.registry import Check, run_checks
from dcctl.evaluate.registry import check as register
from dcctl.evaluate.result import Result
from dcctl.evaluate.versions import Requirement
from dcctl.inventory import expect_kinds as kinds
from dcctl.inventory import load_inventory
from dcctl.inventory.expect_keys import (
    DEFAULTS,
    EXPECT_KEYS,
    GROUPS,
    HEALTH_DEFAULTS,
    BadExpectation,
    Expectations,
    expectations,
    value,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "inventories" / "example-rack.yaml"
REGISTRIES = (check.CHECKS, GPU_CHECKS, node_health.CHECKS, io_health.CHECKS)
# Read outside the check registries: sent to the node, which reads that much kernel log.
SENT_TO_THE_NODE = {"xid_window_h"}


# --- the table -------------------------------------------------------------------------------


def test_every_key_is_declared_whole() -> None:
    for name, key in EXPECT_KEYS.items():
        assert key.name == name
        assert key.group in GROUPS
        assert key.description and not key.description.endswith(".")
        assert key.kind.expected


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_every_default_is_a_valid_value_of_its_kind(name: str) -> None:
    key = EXPECT_KEYS[name]
    assert kinds.coerce(key.kind, key.default, name) == key.default


def test_health_defaults_are_the_health_groups_defaults() -> None:
    health = {n for n, k in EXPECT_KEYS.items() if k.group in ("gpu health", "node health")}
    assert set(HEALTH_DEFAULTS) == health & set(DEFAULTS)
    assert set(HEALTH_DEFAULTS) == health - {"max_gpu_temp_c", "nvlink_links"}


BENCH_KEYS: dict[str, tuple[kinds.Kind, Any]] = {
    "gemm_min_efficiency": (kinds.FRACTION, 0.70),
    "gemm_min_tflops_bf16": (kinds.AMOUNT, None),
    "gemm_min_tflops_fp16": (kinds.AMOUNT, None),
    "gemm_min_tflops_tf32": (kinds.AMOUNT, None),
    "gemm_min_tflops_fp32": (kinds.AMOUNT, None),
    "gemm_min_tflops_fp8": (kinds.AMOUNT, None),
    "gemm_max_gpu_spread": (kinds.FRACTION, 0.10),
    "soak_max_throughput_drop": (kinds.FRACTION, 0.10),
    "allreduce_min_busbw_gbs": (kinds.AMOUNT, None),
    "fio_min_seqread_mb_s": (kinds.AMOUNT, None),
    "fio_min_seqwrite_mb_s": (kinds.AMOUNT, None),
    "fio_min_randread_iops": (kinds.AMOUNT, None),
    "fio_min_randwrite_iops": (kinds.AMOUNT, None),
    "fio_max_randread_p99_us": (kinds.AMOUNT, None),
    "allreduce_cluster_min_busbw_gbs": (kinds.AMOUNT, None),
    "allreduce_pair_min_busbw_gbs": (kinds.AMOUNT, None),
    "certify_max_straggler": (kinds.FRACTION, 0.10),
    "certify_min_mfu": (kinds.FRACTION, 0.30),
    "certify_min_samples_per_s": (kinds.AMOUNT, None),
    "certify_max_final_loss": (kinds.AMOUNT, None),
    "baseline_runs": (kinds.POSITIVE_COUNT, 5),
    "baseline_long_days": (kinds.AMOUNT, 28),
    "regression_max_drop": (kinds.FRACTION, 0.05),
    "regression_fail": (kinds.BOOL, False),
    "outlier_min_spread": (kinds.FRACTION, 0.10),
}


def test_bench_keys() -> None:
    bench = {name: (k.kind, k.default) for name, k in EXPECT_KEYS.items() if k.group == "bench"}
    assert bench == BENCH_KEYS


def test_every_check_key_is_read_by_a_registered_check() -> None:
    read = {key for table in REGISTRIES for row in table for key in row.keys}
    judged_here = {name for name, key in EXPECT_KEYS.items() if key.group != "bench"}
    assert read | SENT_TO_THE_NODE == judged_here
    assert not read & SENT_TO_THE_NODE


def test_registered_ids_are_unique_within_a_registry() -> None:
    for table in REGISTRIES:
        ids = [row.id for row in table]
        assert len(ids) == len(set(ids))


def test_a_check_on_a_key_not_in_the_table_fails_at_import() -> None:
    with pytest.raises(LookupError, match="gpu_modle"):
        register("gpu.model", lambda facts, model: [], "gpu_modle")


# --- the example inventory -------------------------------------------------------------------


def example_expect_lines() -> dict[str, str]:
    """Each `expect` key of `all.vars` in the example, and its line."""
    text = EXAMPLE.read_text()
    block = text.split("\n    expect:", 1)[1].split("\n\n", 1)[0]
    lines = re.findall(r"^      ([a-z0-9_]+):(.*)$", block, re.MULTILINE)
    return {name: rest for name, rest in lines}


def test_example_lists_every_key_in_table_order_with_its_default() -> None:
    inventory = load_inventory(str(EXAMPLE), env={})
    expect = inventory.host("gpu001.rack1.example.com").expect
    assert list(expect) == list(EXPECT_KEYS)
    assert {name: expect[name] for name in DEFAULTS} == dict(DEFAULTS)


def test_example_comments_every_key() -> None:
    lines = example_expect_lines()
    assert list(lines) == list(EXPECT_KEYS)
    uncommented = [name for name, rest in lines.items() if "#" not in rest]
    assert uncommented == []


# --- one rule for the inventory and for Expectations ------------------------------------------


def inventory_problem(tmp_path: Path, name: str, written: str) -> str:
    path = tmp_path / "rack.yaml"
    path.write_text(f"all:\n  hosts:\n    gpu01:\n      expect:\n        {name}: {written}\n")
    with pytest.raises(InputError) as caught:
        load_inventory(str(path), env={})
    return str(caught.value).partition(": ")[2]


@pytest.mark.parametrize(
    ("name", "written", "given"),
    [
        ("gpu_count", "eight", "eight"),
        ("gpu_count", "-1", -1),
        ("gpu_count", "true", True),
        ("ib_rate", "0", 0),
        ("min_memory_gb", "true", True),
        ("xid_window_h", "0", 0),
        ("gemm_min_efficiency", "1.5", 1.5),
        ("gemm_min_tflops_bf16", "'fast'", "fast"),
        ("swap", "maybe", "maybe"),
        ("ecc", "sometimes", "sometimes"),
        ("fabric_manager", "always", "always"),
        ("vbios_uniform", "'yes'", "yes"),
        ("mounts", "/scratch", "/scratch"),
        ("mounts", "[scratch]", ["scratch"]),
        ("ignore_xids", "[x]", ["x"]),
        ("xid_status", "[63]", [63]),
        ("xid_status", "{63: bad}", {63: "bad"}),
        ("xid_status", "{x: fail}", {"x": "fail"}),
        ("kernel", "'=>5.15'", "=>5.15"),
    ],
)
def test_inventory_and_evaluators_refuse_alike(
    tmp_path: Path, name: str, written: str, given: Any
) -> None:
    from_inventory = inventory_problem(tmp_path, name, written)
    with pytest.raises(BadExpectation) as caught:
        Expectations({name: given}).get(name)
    assert from_inventory.startswith(f"expect.{name}")
    assert str(caught.value) == f"invalid expectation {from_inventory.removeprefix('expect.')}"


@pytest.mark.parametrize(
    ("name", "written", "wanted"),
    [
        ("swap", "off", "off"),
        ("swap", "'On'", "on"),
        ("fabric_manager", "on", "required"),
        ("xid_status", "{63: FAIL, '13': ignore}", {63: "fail", 13: "ignore"}),
        ("gemm_min_efficiency", "1", 1),
        ("allreduce_min_busbw_gbs", "380.5", 380.5),
        ("cuda", "12.10", "12.10"),
    ],
)
def test_inventory_keeps_the_plain_validated_value(
    tmp_path: Path, name: str, written: str, wanted: Any
) -> None:
    path = tmp_path / "rack.yaml"
    path.write_text(f"all:\n  hosts:\n    gpu01:\n      expect:\n        {name}: {written}\n")
    assert load_inventory(str(path), env={}).hosts[0].expect == {name: wanted}


# --- Expectations ------------------------------------------------------------------------------


def test_typed_values_defaults_and_no_judgement() -> None:
    expect = Expectations({"gpu_count": 8, "driver": ">=550.54", "ecc": False, "mig_mode": None})
    assert expect.get("gpu_count") == 8
    requirement = expect.get("driver")
    assert isinstance(requirement, Requirement)
    assert str(requirement) == ">=550.54"
    assert expect.get("ecc") == "off"
    assert expect.get("mig_mode") == "off"  # null unsets: the default applies
    assert expect.get("gemm_min_efficiency") == 0.70
    assert expect.get("gemm_min_tflops_bf16") is None  # no default, unset: not judged
    assert set(expect.given) == {"gpu_count", "driver", "ecc"}


def test_a_bad_value_costs_only_its_own_key() -> None:
    expect = Expectations({"max_pcie_replays": "lots", "max_nvlink_crc": 5, "colour": "blue"})
    with pytest.raises(BadExpectation, match="invalid expectation max_pcie_replays"):
        expect.get("max_pcie_replays")
    assert expect.get("max_nvlink_crc") == 5
    assert expect.unknown == {"colour": "blue"}


def test_default_lists_and_mappings_are_never_shared() -> None:
    expect = Expectations({})
    expect.get("ignore_xids").append(13)
    expect.get("xid_status")[63] = "fail"
    assert expect.get("ignore_xids") == []
    assert expect.get("xid_status") == {}
    assert DEFAULTS["ignore_xids"] == []


def test_helpers_accept_a_mapping_or_expectations() -> None:
    expect = Expectations({"gpu_count": 8})
    assert expectations(expect) is expect
    assert value({"soak_max_throughput_drop": 0.2}, "soak_max_throughput_drop") == 0.2
    assert value(expect, "gemm_max_gpu_spread") == 0.10
    with pytest.raises(KeyError):
        value({}, "gpu_modle")


# --- the registry --------------------------------------------------------------------------------


def _seen(result_id: str) -> Any:
    def judge(facts: dict[str, Any], *values: Any) -> list[Result]:
        return [Result(result_id, "pass", repr(values))]

    return judge


def test_checks_run_in_table_order_with_their_keys_typed_values() -> None:
    table: tuple[Check[Any], ...] = (
        register("b", _seen("b"), "gpu_count", "fabric_manager"),
        register("a", _seen("a")),
    )
    results = run_checks(table, {}, Expectations({"gpu_count": 8, "fabric_manager": True}))
    assert [(r.id, r.message) for r in results] == [("b", "(8, 'required')"), ("a", "()")]


def test_a_check_with_nothing_to_judge_by_is_not_run() -> None:
    table = (
        register("fio", _seen("fio"), "fio_min_seqread_mb_s"),
        register("temp", _seen("temp"), "max_gpu_temp_c", judges_unset=True),
    )
    results = run_checks(table, {}, Expectations({}))
    assert [(r.id, r.message) for r in results] == [("temp", "(None,)")]


def test_a_bad_value_is_one_error_result_and_a_failed_probe_another() -> None:
    table = (
        register("gpu.count", _seen("gpu.count"), "gpu_count", fact="gpus", probes=("gpu",)),
        register("ib.ports", _seen("ib.ports"), "ib_ports", fact="ib", probes=("ib",)),
    )
    facts = {"ib": None, "probe_errors": {"ib": "OSError: boom"}}
    results = run_checks(table, facts, Expectations({"gpu_count": "8", "ib_ports": 4}))
    assert [(r.id, r.status, r.message, r.expected) for r in results] == [
        (
            "gpu.count",
            "error",
            "invalid expectation gpu_count: expected a whole number >= 0, got '8'",
            "8",
        ),
        ("ib.ports", "error", "ib probe failed: OSError: boom", 4),
    ]
