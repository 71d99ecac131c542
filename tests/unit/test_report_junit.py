"""JUnit XML of a run: validated against the Jenkins xUnit plugin's JUnit schema
(tests/fixtures/junit/junit-10.xsd, source in SOURCE.md) and read back with ElementTree."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest
import xmlschema
from run_documents import UNREACHABLE, acceptance_run, host
from sysroots import FIXTURES

from dcctl.report.junit import render_junit

SCHEMA = xmlschema.XMLSchema(FIXTURES / "junit" / "junit-10.xsd")


@pytest.fixture
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return acceptance_run(tmp_path_factory)


def rendered(document: dict[str, Any]) -> ET.Element:
    text = render_junit(document)
    SCHEMA.validate(text)
    return ET.fromstring(text.encode())


def suite(root: ET.Element, name: str) -> ET.Element:
    (found,) = [s for s in root.findall("testsuite") if s.get("name") == name]
    return found


def case(root: ET.Element, suite_name: str, name: str) -> ET.Element:
    (found,) = [c for c in suite(root, suite_name).findall("testcase") if c.get("name") == name]
    return found


def expected_names(result: dict[str, Any]) -> str:
    gpu = result.get("gpu")
    return f"{result['step']}: {result['id']}" + (f" (GPU {gpu['index']})" if gpu else "")


def test_one_testcase_per_host_and_check(document: dict[str, Any]) -> None:
    root = rendered(document)
    assert [s.get("name") for s in root.findall("testsuite")] == [
        *(h["name"] for h in document["hosts"]),
        "cluster",
    ]
    for entry in document["hosts"]:
        cases = suite(root, entry["name"]).findall("testcase")
        names = [c.get("name") for c in cases]
        wanted = [expected_names(r) for r in entry["results"]]
        if entry["error"] is not None:
            wanted.append("host")
        assert names == wanted
        assert len(set(names)) == len(names), "a dashboard keys testcases on their names"
        assert {c.get("classname") for c in cases} == {f"dcctl.{entry['name']}"}
    # A per-GPU finding names its GPU.
    case(root, "gpu002", "preflight: gpu.pcie.width (GPU 2)")


def test_counts_match_the_testcases(document: dict[str, Any]) -> None:
    root = rendered(document)
    for entry in root.findall("testsuite"):
        cases = entry.findall("testcase")
        assert int(entry.get("tests", "-1")) == len(cases)
        for attribute, tag in (
            ("failures", "failure"),
            ("errors", "error"),
            ("skipped", "skipped"),
        ):
            assert int(entry.get(attribute, "-1")) == sum(c.find(tag) is not None for c in cases)
    assert int(root.get("tests", "-1")) == len(list(root.iter("testcase")))
    assert int(root.get("failures", "-1")) == len(list(root.iter("failure")))
    assert root.get("time") == "367.000"  # the run's wall time, not the hosts' summed
    gpu001 = suite(root, "gpu001")
    assert (gpu001.get("time"), gpu001.get("timestamp")) == ("41.500", "2026-11-28T13:35:03Z")


def test_statuses_map_to_junit(document: dict[str, Any]) -> None:
    skipped = {"id": "dcgm.diag", "kind": "check", "status": "skip", "message": "dcgmi not found",
               "step": "preflight"}  # fmt: skip
    host(document, "gpu001")["results"].append(skipped)
    root = rendered(document)
    failure = case(root, "gpu002", "preflight: gpu.pcie.width (GPU 2)").find("failure")
    assert failure is not None
    assert failure.get("message", "").endswith("PCIe link trained at x8 of x16")
    assert "expected: maximum link width" in (failure.text or "")
    # A warning passes, with its message where the CI page shows output.
    warned = case(root, "gpu003", "preflight: kernel.mlx5_pcie")
    assert [child.tag for child in warned] == ["system-out"]
    assert (warned.findtext("system-out") or "").startswith("warning: mlx5 NIC 0000:3c:00.0")
    dcgm = case(root, "gpu001", "preflight: dcgm.diag").find("skipped")
    assert dcgm is not None and dcgm.get("message") == "dcgmi not found"
    pair = case(root, "cluster", "perf: cluster.allreduce.pair [gpu001, gpu002]")
    assert pair.find("failure") is not None
    assert suite(root, "cluster").get("failures") == "1"


def test_unreachable_host_is_an_error(document: dict[str, Any]) -> None:
    root = rendered(document)
    down = suite(root, UNREACHABLE)
    assert (down.get("tests"), down.get("errors")) == ("1", "1")
    error = case(root, UNREACHABLE, "host").find("error")
    assert error is not None
    assert error.get("type") == "unreachable"
    assert "No route to host" in error.get("message", "")


def test_hostile_text_stays_valid_xml(document: dict[str, Any]) -> None:
    hostile = 'gpu<&"]]>\x1b[31m\x00\ud800 x'
    entry = host(document, "gpu002")
    entry["name"] = hostile
    entry["results"][0]["message"] = "line1\nline2\r\n\x07 <b>&amp; ]]>"
    entry["results"][0]["status"] = "fail"
    document["hosts"][-1]["error"]["message"] = "kex\x00 failed\x1f"
    root = rendered(document)
    names = [s.get("name") for s in root.findall("testsuite")]
    assert 'gpu<&"]]>\\x1b[31m\\x00\\ud800 x' in names
    failure = next(root.iter("failure"))
    assert failure.get("message") == "line1\nline2\n\\x07 <b>&amp; ]]>"
    error = case(root, UNREACHABLE, "host").find("error")
    assert error is not None and error.get("message") == "kex\\x00 failed\\x1f"


def test_empty_and_cluster_less_runs(document: dict[str, Any]) -> None:
    document["hosts"], document["cluster_results"] = [], []
    root = rendered(document)
    assert (root.findall("testsuite"), root.get("tests")) == ([], "0")
