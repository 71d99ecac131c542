"""The headless-Chromium harness (tests/browser.py) can fail where the report tests need it to.

The report tests assert that a page made no network request, printed, and rendered; an
assertion like that is only worth something if the harness demonstrably sees a request when one
is made, sees an exception when one is thrown, and gives up on a browser that hangs or dies
instead of hanging the suite. Every address here is on loopback, on ports held closed by the
test, so nothing leaves the machine."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser import chromium_path, live_processes_naming, open_page
from processes import process_alive

needs_chromium = pytest.mark.skipif(
    chromium_path() is None,
    reason="no chromium: install Debian's chromium or set DCCTL_CHROMIUM to a Chromium binary",
)


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections for the whole test: bound, so nobody else can
    take it, but never listening. (Port 9 would not do: Chromium refuses it as an unsafe port
    before any connection is tried.)"""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]


def page(tmp_path: Path, body: str, head: str = "") -> Path:
    html = tmp_path / "page.html"
    html.write_text(f"<!doctype html><html><head>{head}</head><body>{body}</body></html>")
    return html


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    # IHDR is always the first chunk: length, type, then width and height.
    length, kind, width, height = struct.unpack(">I4sII", data[8:24])
    assert (length, kind) == (13, b"IHDR")
    return width, height


@needs_chromium
def test_requests_to_loopback_are_seen_and_their_failure_too(
    tmp_path: Path, closed_port: int
) -> None:
    base = f"http://127.0.0.1:{closed_port}"
    html = page(
        tmp_path,
        f'<img src="{base}/x.png"><script>fetch("{base}/data.json").catch(() => null)</script>',
    )
    with open_page(html) as browser:
        workdir = browser.workdir
        own, *others = browser.requests
        assert own == html.resolve().as_uri()
        # The image and the fetch are both started before the load event; which one Chromium
        # announces first is its business.
        assert sorted(others) == [f"{base}/data.json", f"{base}/x.png"]
        assert sorted(browser.failed) == [f"{base}/data.json", f"{base}/x.png"]
        assert any("ERR_CONNECTION_REFUSED" in error for error in browser.console_errors)
    assert live_processes_naming(workdir) == []
    assert not workdir.exists()


@needs_chromium
def test_an_inline_page_requests_only_itself_and_evaluate_reads_its_dom(tmp_path: Path) -> None:
    """Also: an expression that never settles ends in a TimeoutError rather than a hung suite,
    and the browser is gone once that error has left the `with` block."""
    html = page(
        tmp_path,
        '<svg width="20" height="20"><circle r="5" cx="10" cy="10"/></svg><svg></svg>'
        '<script>document.body.dataset.ran = "yes"; console.error("drawn", 2)</script>',
        head="<style>svg { border: 1px solid }</style>",
    )
    # Only a TimeoutError is expected here: a failed assertion inside still fails the test.
    with (
        pytest.raises(TimeoutError, match=r"reply to Runtime\.evaluate within 1 s"),
        open_page(html) as browser,
    ):
        workdir = browser.workdir
        assert browser.requests == [html.resolve().as_uri()]
        assert browser.failed == []
        assert browser.evaluate("document.querySelectorAll('svg').length") == 2
        assert browser.evaluate("document.body.dataset.ran") == "yes"
        assert browser.evaluate("Promise.resolve({a: [1, 'b']})") == {"a": [1, "b"]}
        # A console.error is how a broken report script would show itself.
        assert browser.console_errors == ["drawn 2"]
        with pytest.raises(AssertionError, match="Error: broken report"):
            browser.evaluate("(() => { throw new Error('broken report') })()")
        with pytest.raises(AssertionError, match="TypeError: rejected"):
            browser.evaluate("Promise.reject(new TypeError('rejected'))")
        # Shortened only now: a loaded machine can take more than a second to start Chromium.
        browser.timeout_s = 1
        browser.evaluate("new Promise(() => {})")
    assert live_processes_naming(workdir) == []
    assert not workdir.exists()


@needs_chromium
def test_screenshots_are_pngs_of_the_page_and_the_pdf_is_a_pdf(tmp_path: Path) -> None:
    # A data: image is inline content, yet Chromium reports it as a request: the report tests
    # have to leave data: URLs out when they assert that nothing was fetched.
    gif = "data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7"
    html = page(tmp_path, f'<h1>Report</h1><img src="{gif}"><div style="height: 2500px"></div>')
    with open_page(html, width=1200, height=800) as browser:
        assert browser.requests == [html.resolve().as_uri(), gif]
        assert browser.evaluate("[innerWidth, innerHeight]") == [1200, 800]
        browser.screenshot(tmp_path / "full.png")
        browser.screenshot(tmp_path / "viewport.png", full_page=False)
        pdf = browser.pdf()
    assert png_size(tmp_path / "viewport.png") == (1200, 800)
    width, height = png_size(tmp_path / "full.png")
    assert width == 1200
    assert 2500 < height < 3000
    assert pdf.startswith(b"%PDF")
    assert len(pdf) > 1000


@needs_chromium
def test_an_image_blocked_by_csp_is_still_listed_and_never_loads(
    tmp_path: Path, closed_port: int
) -> None:
    """Chromium announces the request (Network.requestWillBeSent), then fails it with
    blockedReason 'csp' and an empty errorText (Network.loadingFailed), and logs the violation
    as a console error; it never connects. So a CSP cannot hide an attempted fetch from
    `requests`."""
    url = f"http://127.0.0.1:{closed_port}/logo.png"
    html = page(
        tmp_path,
        f'<img src="{url}">',
        head='<meta http-equiv="Content-Security-Policy" content="default-src \'none\'">',
    )
    with open_page(html) as browser:
        assert browser.requests == [html.resolve().as_uri(), url]
        assert browser.failed == [url]
        assert browser.evaluate("document.images[0].naturalWidth") == 0
        assert any("Content Security Policy" in error for error in browser.console_errors)


def test_a_browser_that_dies_at_start_is_reported_with_its_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "chromium"
    fake.write_text("#!/bin/sh\necho 'cannot open display: no such thing' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("DCCTL_CHROMIUM", str(fake))
    with pytest.raises(AssertionError, match="cannot open display"), open_page(tmp_path / "x"):
        pass


def test_a_browser_that_never_answers_times_out_and_is_killed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid_file = tmp_path / "fake.pid"
    fake = tmp_path / "chromium"
    fake.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 600\n")
    fake.chmod(0o755)
    monkeypatch.setenv("DCCTL_CHROMIUM", str(fake))
    with (
        pytest.raises(TimeoutError, match=r"reply to Target\.setDiscoverTargets within 1 s"),
        open_page(tmp_path / "x", timeout_s=1),
    ):
        pass
    assert not process_alive(int(pid_file.read_text()))
