"""Markdown of a run: every table well formed (the same cell count in every row, whatever the
nodes wrote), one row per host x check, failures first, the benchmark figures."""

from __future__ import annotations

from typing import Any

import pytest
from run_documents import UNREACHABLE, acceptance_run, host, markdown_tables

from dcctl.report.markdown import md_cell, render_markdown

ORDER = ["fail", "error", "warn", "skip", "pass"]


@pytest.fixture
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return acceptance_run(tmp_path_factory)


def test_head_names_the_run(document: dict[str, Any]) -> None:
    text = render_markdown(document)
    assert text.startswith("# dcctl run: FAILED\n")
    for line in ("- **Run:** 20261128T133503Z-run-acceptance-3f2a",
                 "- **Playbook:** playbooks/acceptance.yaml",
                 "- **Inventory:** inventories/rack-a.yaml", "- **dcctl:** 0.1.0",
                 "- **Started:** 2026-11-28T13:35:03Z",
                 "- **Hosts:** 4: 2 passed, 1 failed, 1 error; 1 warning(s)"):  # fmt: skip
        assert line in text.splitlines()


def test_one_row_per_host_and_check_failures_first(document: dict[str, Any]) -> None:
    tables = markdown_tables(render_markdown(document))
    header, *rows = tables["Results"]
    assert header == ["Host", "Step", "Check", "GPU", "Status", "Observed", "Expected", "Message"]
    wanted = sorted(
        (h["name"], r["step"], r["id"], str(r["gpu"]["index"]) if r.get("gpu") else "-")
        for h in document["hosts"]
        for r in h["results"]
    )
    got = [tuple(row[:4]) for row in rows]
    assert sorted(got) == sorted([*wanted, (UNREACHABLE, "-", "host", "-")])
    statuses = [row[4] for row in rows]
    assert statuses == sorted(statuses, key=ORDER.index)
    assert rows[0][:5] == ["gpu002", "preflight", "gpu.pcie.width", "2", "fail"]
    unreachable = next(row for row in rows if row[0] == UNREACHABLE)
    assert unreachable[4] == "error" and "No route to host" in unreachable[7]


def test_steps_and_hosts(document: dict[str, Any]) -> None:
    tables = markdown_tables(render_markdown(document))
    assert [row[:3] for row in tables["Steps"][1:]] == [
        ["preflight", "check", "failed"],
        ["perf", "bench", "failed"],
    ]
    hosts = {row[0]: row for row in tables["Hosts"][1:]}
    assert list(hosts) == ["gpu002", UNREACHABLE, "gpu001", "gpu003"]  # failed, error, passed
    assert hosts["gpu001"][2:7] == ["Ubuntu 22.04.4 LTS", "5.15.0-101-generic", "550.54.15",
                                    "12.4", "8x NVIDIA H100 80GB HBM3"]  # fmt: skip
    assert hosts["gpu003"][7] == "1 warn"
    assert hosts[UNREACHABLE][2:7] == ["-"] * 5
    assert hosts[UNREACHABLE][8].startswith("unreachable: ssh: connect to 10.0.0.4")
    # One step: no steps table.
    document["steps"] = document["steps"][:1]
    assert "Steps" not in markdown_tables(render_markdown(document))


def test_benchmark_figures(document: dict[str, Any]) -> None:
    tables = markdown_tables(render_markdown(document))
    gemm = {(row[0], row[2]): row for row in tables["GEMM"][1:]}
    assert gemm[("gpu001", "bf16")][3:] == ["781.04", "78.9 %", "pass"]
    allreduce = {row[0]: row for row in tables["Allreduce"][1:]}
    assert allreduce["gpu002"][3:] == ["8 GiB", "142.86", "250.00", "fail"]
    assert allreduce["gpu001 + gpu002"][-2:] == ["21.00", "fail"]
    fio = {(row[0], row[2]): row for row in tables["fio"][1:]}
    assert fio[("gpu001", "randread")][3:] == ["410.0", "105,000", "480", "pass"]
    (certify,) = tables["Certify"][1:]
    assert certify[:5] == ["gpu001, gpu002", "certified", "16", "5,120", "41.0 %"]
    cluster = tables["Cluster results"]
    assert [row[1] for row in cluster[1:]] == ["cluster.allreduce.pair", "certify"]  # fail first


def test_hostile_text_keeps_tables_whole(document: dict[str, Any]) -> None:
    entry = host(document, "gpu002")
    entry["name"] = "gpu|002\n<script>"
    entry["results"][0]["message"] = "a | b\r\nc \\"
    entry["results"][0]["observed"] = "<none>"
    entry["results"][0]["status"] = "fail"
    text = render_markdown(document)
    tables = markdown_tables(text)  # asserts every row has the header's cell count
    row = next(r for r in tables["Results"][1:] if r[1:3] == ["preflight", "os.release"])
    assert row[0] == "gpu\\|002<br>&lt;script>"
    assert row[5] == "&lt;none>"
    assert row[7] == "a \\| b<br>c \\\\"
    assert "<script>" not in text


def test_cells() -> None:
    assert md_cell(None) == md_cell("") == "-"
    assert md_cell("x\x1by") == "x\\x1by"
    assert md_cell(3) == "3"


def test_a_real_check_run_shape(document: dict[str, Any]) -> None:
    """A `dcctl check` run on a machine with no GPU: one step, one skip, facts with no GPUs."""
    single = {**document, "command": "check", "playbook": None, "steps": document["steps"][:1],
              "cluster_results": []}  # fmt: skip
    entry = host(single, "gpu001")
    entry["results"] = [{"id": "gpu.present", "kind": "check", "status": "skip",
                         "observed": None, "expected": None, "step": "check",
                         "message": "no NVIDIA driver loaded; GPU checks skipped"}]  # fmt: skip
    single["hosts"] = [entry]
    tables = markdown_tables(render_markdown(single))
    assert set(tables) == {"Hosts", "Results"}
    assert tables["Results"][1][:5] == ["gpu001", "check", "gpu.present", "-", "skip"]


def test_the_test_run_is_a_valid_run_document(document: dict[str, Any]) -> None:
    """The renderers' input is what dcctl writes: the run schema holds for it."""
    import json
    from pathlib import Path

    import jsonschema

    import dcctl.results

    schema = json.loads((Path(dcctl.results.__file__).parent / "run.schema.json").read_text())
    jsonschema.validate(document, schema)
