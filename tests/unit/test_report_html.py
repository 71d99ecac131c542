"""The HTML report as markup: it can request nothing and run nothing, text from nodes stays
text, every section renders from a run that ran it, and a half-written or malformed run
still gives a page. What Chromium makes of the page is
tests/integration/test_report_html_browser.py.

The page is parsed back with the standard library's HTML parser, as a browser tokenizes it.
"""

from __future__ import annotations

import copy
import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from run_documents import UNREACHABLE, acceptance_run

from dcctl.evaluate.bench_gemm import GemmLimits, evaluate_gemm
from dcctl.node.bench.gemm import summarize_gemm
from dcctl.report.html import render_html
from dcctl.report.html.series import gemm_grids

FIXTURES = Path(__file__).parent.parent / "fixtures"


class _Page(HTMLParser):
    """Every start tag with its attributes, and the page's text."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def named(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.tags if name == tag]


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> str:
    return render_html(acceptance_run(tmp_path_factory), sources={"inventory": "all: {}\n"})


# Attributes through which a page loads or navigates to something.
_FETCHING = {"src", "href", "xlink:href", "action", "poster", "data", "srcset", "background"}


def test_the_page_can_request_nothing_and_runs_no_script(page: str) -> None:
    parsed = _Page(page)
    assert not parsed.named("script") and not parsed.named("link") and not parsed.named("iframe")
    for tag, attrs in parsed.tags:
        assert not [a for a in attrs if a.startswith("on")], (tag, attrs)
        for name in _FETCHING & set(attrs):
            # In-page references (an SVG's clip paths) and inline data (a heatmap's raster,
            # which the policy allows as img-src data:): never a URL.
            assert (attrs[name] or "").startswith(("#", "data:image/png;base64,")), (tag, name)
    assert "url(" not in page.replace("url(#", "")
    csp = [m for m in parsed.named("meta") if m.get("http-equiv") == "Content-Security-Policy"]
    assert csp and "default-src 'none'" in (csp[0]["content"] or "")


def test_verdict_counts_steps_and_the_unreachable_host(page: str) -> None:
    parsed = _Page(page)
    counts = {a["data-count"]: a for a in parsed.named("div") if a.get("data-count")}
    assert set(counts) == {"hosts", "passed", "failed", "error", "warnings"}
    text = "".join(parsed.text)
    assert "FAILED" in text and "preflight" in text and "perf" in text
    rows = {a["data-host"]: a["class"] for a in parsed.named("tr") if a.get("data-host")}
    assert set(rows) == {"gpu001", "gpu002", "gpu003", UNREACHABLE}
    assert "unreachable" in (rows[UNREACHABLE] or "")
    assert "No route to host" in text
    # Failing hosts first in the matrix, the unreachable one among the problems.
    assert list(rows).index("gpu001") > list(rows).index(UNREACHABLE)


def test_each_benchmark_that_ran_has_its_plot_and_only_those(page: str) -> None:
    plots = [a["data-plot"] for a in _Page(page).named("figure")]
    # Two hosts ran GEMM and fio. This run keeps no allreduce sweep (its pair result has no
    # sizes, its hosts no allreduce facts) and no certify curve: no plot for those.
    assert plots == ["gemm-0", "fio"]
    assert page.count("<svg") == len(plots)


def test_text_from_nodes_stays_text(tmp_path_factory: pytest.TempPathFactory) -> None:
    document = acceptance_run(tmp_path_factory)
    # Markup, entities, and what matplotlib would read as mathtext ($...$) or as a legend
    # entry to hide (a leading _).
    hostile = '_$\\x$ <script>alert(1)</script>"><img src=x onerror=alert(2)> a$b$c &amp;'
    host = next(h for h in document["hosts"] if h["name"] == "gpu001")
    host["name"] = hostile
    host["results"][0]["message"] = hostile
    host["facts"]["kernel"] = hostile
    document["run_id"] = hostile
    page = render_html(document, sources={"inventory": hostile})
    parsed = _Page(page)
    assert not parsed.named("script") and not parsed.named("img")
    text = "".join(parsed.text)
    assert text.count(hostile) >= 6  # run id, matrix row, facts, inventory, footer, plots
    assert any(a.get("data-host") == hostile for a in parsed.named("tr"))
    gemm = page.split('data-plot="gemm-0"')[1].split("</figure>")[0]
    assert hostile in "".join(_Page(gemm).text)  # drawn as written, dollars and all


def _malformed(document: dict[str, Any], case: str) -> None:
    host = document["hosts"][0]
    if case == "nothing":
        document.clear()
    elif case == "no hosts":
        document.update(hosts=[], cluster_results=[], steps=[])
    elif case == "wrong types":
        document.update(summary="x", steps={"a": 1}, cluster_results=[1, None, "x"])
        host.update(results={"id": 1}, facts=["gpus"], error="down")
    elif case == "bad figures":
        for result in host["results"]:
            result["metrics"] = {"tflops_per_gpu": ["x", None, float("nan"), True],
                                 "mb_s": "fast", "peak_tflops": 0}  # fmt: skip
        host["facts"]["allreduce"] = {"sizes": [{"bytes": -1, "busbw_gbs": 3}, "x", {"bytes": 8}]}
        host["facts"]["gemm"] = {"soak": {"gpus": [{"series": [[0, "x"], [1]]}, 5]},
                                 "nvml_samples": {"gpus": [{"series": "x"}]}}  # fmt: skip
        document["cluster_results"] = [
            {"id": "certify", "status": "fail", "certificate": {"loss_curve": [[1], "x", [2, 0.5]],
             "ranks": [{"rank": "a"}, {"rank": 0, "step_p50_s": 0.1}]}},
            {"id": "cluster.allreduce.pair", "hosts": "ab", "sizes": 5},
        ]  # fmt: skip


@pytest.mark.parametrize("case", ["nothing", "no hosts", "wrong types", "bad figures"])
def test_a_half_written_or_malformed_run_still_renders(
    tmp_path_factory: pytest.TempPathFactory, case: str
) -> None:
    document = copy.deepcopy(acceptance_run(tmp_path_factory))
    _malformed(document, case)
    page = render_html(document)
    parsed = _Page(page)
    assert page.rstrip().endswith("</html>")
    assert parsed.named("footer")
    assert page.count("<svg") == len(parsed.named("figure"))


def test_a_real_certify_run_has_its_loss_curve_and_step_times() -> None:
    """`dcctl certify --quick` as recorded on a CPU machine (tests/fixtures/report)."""
    fixture = FIXTURES / "report" / "certify-quick-cpu.json"
    page = render_html(json.loads(fixture.read_text()))
    parsed = _Page(page)
    assert [a["data-plot"] for a in parsed.named("figure")] == ["certify-loss-0", "certify-steps-0"]
    text = "".join(parsed.text)
    assert "CERTIFIED" in text and "1.0247 → 0.0723" in text
    assert "target 0.15" in page  # the loss target drawn in the plot's legend


def test_a_gpu_without_a_figure_leaves_its_column_empty() -> None:
    """GPU 3 of the recorded 8x H100 run errors and GPU 5 runs at half speed: the grid keeps
    each figure under its own GPU index (the result's per-GPU list skips GPU 3)."""
    ranks = sorted((FIXTURES / "bench" / "gemm" / "h100x8").glob("rank-*.json"))
    docs = [json.loads(p.read_text()) for p in ranks]
    docs[3] = {key: docs[3][key] for key in ("device", "name", "pci_bus_id", "rank")}
    docs[3]["error"] = "CUDA error: an illegal memory access was encountered"
    for result in docs[5]["results"]:
        result["tflops"] /= 2
    section = summarize_gemm(docs)
    results = [r.to_json() for r in evaluate_gemm(section, GemmLimits())]
    document = {"hosts": [{"name": "n1", "status": "failed", "facts": {"gemm": section},
                           "results": results}]}  # fmt: skip
    bf16 = next(g for g in gemm_grids(document) if g.dtype == "bf16")
    row = bf16.tflops[0]
    assert len(row) == 8 and row[3] is None
    assert row[5] is not None and row[5] < 0.6 * (row[4] or 0)
