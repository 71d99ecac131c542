"""The Prometheus textfile, read back with prometheus_client's own parser."""

from __future__ import annotations

import os
import stat
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dcctl.report.prometheus import render_textfile, write_textfile

NOW = datetime(2026, 11, 28, 13, 35, 3, tzinfo=timezone.utc)


def gpu(index: int) -> dict[str, Any]:
    return {"index": index, "pci_bus_id": None, "serial": None}


def host(name: str, status: str, results: list[dict[str, Any]]) -> dict[str, Any]:
    error = {"kind": "unreachable", "message": "no route"} if status == "error" else None
    return {"name": name, "address": name, "status": status, "error": error, "results": results}


DOCUMENT: dict[str, Any] = {
    "schema": "dcctl.run/1",
    "hosts": [
        host(
            "gpu001",
            "failed",
            [
                {"id": "driver.version", "status": "pass"},
                {"id": "gpu.xid", "status": "fail", "gpu": gpu(3)},
                {"id": "dcgm.diag", "status": "skip"},
                {"id": "ib.link", "status": "warn"},
                {
                    "id": "bench.gemm.bf16",
                    "status": "pass",
                    "gpu": gpu(0),
                    "metrics": {"tflops": 781.25, "efficiency": 0.79, "sizes": [1, 2]},
                },
                {"id": "bench.allreduce", "status": "pass", "metrics": {"busbw_gbs": 380}},
            ],
        ),
        host("gpu002", "error", []),
    ],
    "cluster_results": [],
}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample as (name, sorted labels) -> value; fails on a duplicate label set."""
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        assert family.type == "gauge", family.name
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in found, f"duplicate sample {key}"
            found[key] = sample.value
    return found


def test_every_family_reads_back_with_its_values() -> None:
    got = samples(render_textfile(DOCUMENT, duration_s=12.5, now=NOW))

    def status(host_name: str, check: str, gpu_label: str = "") -> float:
        labels = (("check", check), ("gpu", gpu_label), ("host", host_name))
        return got[("dcctl_check_status", labels)]

    assert status("gpu001", "driver.version") == 0
    assert status("gpu001", "ib.link") == 1
    assert status("gpu001", "gpu.xid", "3") == 2
    assert status("gpu001", "dcgm.diag") == -1
    assert (
        got[
            (
                "dcctl_metric",
                (("gpu", "0"), ("host", "gpu001"), ("metric", "bench.gemm.bf16.tflops")),
            )
        ]
        == 781.25
    )
    assert (
        got[
            (
                "dcctl_metric",
                (("gpu", ""), ("host", "gpu001"), ("metric", "bench.allreduce.busbw_gbs")),
            )
        ]
        == 380
    )
    assert got[("dcctl_host_up", (("host", "gpu001"),))] == 1
    assert got[("dcctl_host_up", (("host", "gpu002"),))] == 0
    assert got[("dcctl_last_run_timestamp_seconds", ())] == NOW.timestamp()
    assert got[("dcctl_audit_duration_seconds", ())] == 12.5
    assert not any(name == "dcctl_metric" and "sizes" in str(labels) for name, labels in got)


def test_help_says_what_each_status_value_means() -> None:
    families = {
        f.name: f for f in text_string_to_metric_families(render_textfile(DOCUMENT, 1, NOW))
    }

    assert (
        "0 pass, 1 warn, 2 fail, 3 error, -1 skip" in families["dcctl_check_status"].documentation
    )


@pytest.mark.parametrize(
    "name", ['quote"d', "back\\slash", "new\nline", 'all\\"\n\\n', "ünïcode-节点", '{x="y"}']
)
def test_hostile_host_names_round_trip(name: str) -> None:
    document = {
        "hosts": [
            host(name, "passed", [{"id": 'check "x"\\', "status": "warn", "metrics": {"v": 1.5}}])
        ]
    }

    got = samples(render_textfile(document, 1.0, NOW))

    assert got[("dcctl_host_up", (("host", name),))] == 1
    assert got[("dcctl_check_status", (("check", 'check "x"\\'), ("gpu", ""), ("host", name)))] == 1
    assert got[("dcctl_metric", (("gpu", ""), ("host", name), ("metric", 'check "x"\\.v')))] == 1.5


def test_a_repeated_check_keeps_the_worse_status_and_its_figure() -> None:
    document = {
        "hosts": [
            host(
                "h",
                "failed",
                [
                    {"id": "bench.fio", "status": "pass", "metrics": {"mb_s": 2000}},
                    {"id": "bench.fio", "status": "fail", "metrics": {"mb_s": 120}},
                    {"id": "bench.fio", "status": "skip", "metrics": {"mb_s": 0}},
                    {"id": "gpu.temp", "status": "warn", "gpu": gpu(1)},
                    {"id": "gpu.temp", "status": "pass", "gpu": gpu(1)},
                    {"id": "gpu.temp", "status": "pass", "gpu": gpu(2)},
                ],
            )
        ]
    }

    got = samples(render_textfile(document, 1.0, NOW))

    assert got[("dcctl_check_status", (("check", "bench.fio"), ("gpu", ""), ("host", "h")))] == 2
    assert got[("dcctl_metric", (("gpu", ""), ("host", "h"), ("metric", "bench.fio.mb_s")))] == 120
    assert got[("dcctl_check_status", (("check", "gpu.temp"), ("gpu", "1"), ("host", "h")))] == 1
    assert got[("dcctl_check_status", (("check", "gpu.temp"), ("gpu", "2"), ("host", "h")))] == 0


def test_an_empty_run_still_renders_every_family() -> None:
    text = render_textfile({"hosts": []}, 0.0, NOW)

    names = [f.name for f in text_string_to_metric_families(text)]
    assert names == [
        "dcctl_check_status",
        "dcctl_metric",
        "dcctl_host_up",
        "dcctl_last_run_timestamp_seconds",
        "dcctl_audit_duration_seconds",
    ]


def test_write_replaces_the_file_whole_readable_by_node_exporter(tmp_path: Path) -> None:
    path = tmp_path / "dcctl.prom"
    path.write_text("old content\n")
    os.chmod(path, 0o600)

    write_textfile(path, DOCUMENT, 3.0, NOW)

    assert path.read_text() == render_textfile(DOCUMENT, 3.0, NOW)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["dcctl.prom"]


def test_a_write_that_cannot_happen_raises_and_leaves_no_temp_file(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        write_textfile(tmp_path / "missing-dir" / "dcctl.prom", DOCUMENT, 1.0, NOW)

    directory = tmp_path / "target-is-a-dir.prom"
    directory.mkdir()
    with pytest.raises(OSError):
        write_textfile(directory, DOCUMENT, 1.0, NOW)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["target-is-a-dir.prom"]
