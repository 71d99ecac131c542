"""The HTML report opened in Debian's real headless Chromium (tests/browser.py drives it over
the DevTools protocol): every plot and the matrix render, the unreachable host shows as such,
the page asks for nothing over any network, it prints to PDF, and a 64-host x 8-GPU run stays
under 5 MB. Skipped where no Chromium is installed (.ci/run installs it).

The pages: the 64 x 8 acceptance run of tests/html_documents.py, and a run recorded from the
real `dcctl bench all --quick` on this kind of machine (tests/fixtures/report/).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest
from browser import BrowserPage, chromium_path, open_page
from html_documents import GPUS, HOSTS, STRAGGLER_HOST, UNREACHABLE, big_run

from dcctl.report.html import render_html

pytestmark = pytest.mark.skipif(chromium_path() is None, reason="no chromium installed")

FIXTURES = Path(__file__).parent.parent / "fixtures" / "report"
MAX_BYTES = 5 * 1024 * 1024
# What the browser reports for each plot: its key, the drawn SVG's size in CSS pixels, and how
# many shapes and text elements it holds.
_PLOTS = """[...document.querySelectorAll('figure.plot')].map(f => {
  const svg = f.querySelector('svg'); const box = svg ? svg.getBoundingClientRect() : null;
  return {key: f.dataset.plot, width: box ? box.width : 0, height: box ? box.height : 0,
          shapes: svg ? svg.querySelectorAll('path, use, image, rect').length : 0,
          texts: svg ? [...svg.querySelectorAll('text')].map(t => t.textContent) : []};
})"""
_MATRIX = """(() => {
  const rows = [...document.querySelectorAll('table.matrix tbody tr')];
  const columns = document.querySelectorAll('table.matrix thead th.check').length;
  return {columns, rows: rows.map(r => {
    const cell = r.querySelector('td'); const box = cell.getBoundingClientRect();
    return {host: r.dataset.host, classes: r.className, first: cell.className,
            span: cell.colSpan, text: cell.textContent, width: box.width,
            untitled: r.querySelectorAll('td:not(.absent):not(.host-error):not([title])').length};
  })};
})()"""


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", header[16:24])
    return width, height


def _no_requests(page: BrowserPage, html: Path) -> None:
    """The page loaded itself and nothing else: inline images (data:) are not requests."""
    fetched = [url for url in page.requests if not url.startswith("data:")]
    assert fetched == [html.resolve().as_uri()]
    assert page.failed == []
    assert page.console_errors == []


@pytest.fixture(scope="module")
def big_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("html") / "acceptance-64x8.html"
    path.write_text(render_html(big_run(tmp_path_factory)), encoding="utf-8")
    return path


def test_a_64_host_page_renders_every_plot_and_the_matrix(big_page: Path, tmp_path: Path) -> None:
    assert big_page.stat().st_size < MAX_BYTES
    with open_page(big_page) as page:
        plots: list[dict[str, Any]] = page.evaluate(_PLOTS)
        matrix: dict[str, Any] = page.evaluate(_MATRIX)
        shot = tmp_path / "page.png"
        page.screenshot(shot)
        pdf = page.pdf()
        _no_requests(page, big_page)
    keys = [plot["key"] for plot in plots]
    assert keys == [
        "gemm-0", "busbw-node", "busbw-cluster", "busbw-pairs", "fio", "certify-loss-0",
        "certify-steps-0", "soak-throughput", "soak-clocks",
    ]  # fmt: skip
    for plot in plots:
        assert plot["width"] > 300 and plot["height"] > 150, plot["key"]
        assert plot["shapes"] > 20, plot["key"]
    by_key = {plot["key"]: plot for plot in plots}
    assert f"rank {2 + GPUS * 20} ({STRAGGLER_HOST})" in by_key["certify-steps-0"]["texts"]
    assert "gpu007 ✗" in by_key["gemm-0"]["texts"]  # the slow GPU's host, marked
    rows = {row["host"]: row for row in matrix["rows"]}
    assert len(rows) == HOSTS and matrix["columns"] > 40
    gone = rows[UNREACHABLE]
    assert "unreachable" in gone["classes"] and gone["span"] == matrix["columns"]
    assert "No route to host" in gone["text"] and gone["width"] > 500
    # Every result cell carries its findings for the hover.
    assert [row["host"] for row in rows.values() if row["untitled"]] == []
    width, height = _png_size(shot)
    assert width == 1400 and height > 8000  # the whole page, not the first screen
    assert pdf.startswith(b"%PDF") and pdf.count(b"/Type /Page\n") + pdf.count(b"/Type /Page/") > 3


def test_the_page_of_a_real_cpu_bench_run(tmp_path: Path) -> None:
    document = json.loads((FIXTURES / "bench-all-quick-cpu.json").read_text())
    html = tmp_path / "bench.html"
    html.write_text(render_html(document), encoding="utf-8")
    with open_page(html) as page:
        plots = page.evaluate(_PLOTS)
        heading = page.evaluate("document.querySelector('h1').textContent")
        _no_requests(page, html)
    assert heading == "dcctl bench report: PASSED"
    assert [plot["key"] for plot in plots] == ["gemm-0", "busbw-node", "fio"]
    assert all(plot["width"] > 100 and plot["shapes"] > 3 for plot in plots)
