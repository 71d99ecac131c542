"""Drives a real headless Chromium over the DevTools protocol, for tests of the HTML report.

The report page must work offline, print, and make no network request; only a real browser
can say so. The protocol runs over `--remote-debugging-pipe` (fd 3 carries commands to the
browser, fd 4 its replies, each message JSON ended by a NUL byte), so no websocket or browser
automation package is needed. Every wait has a deadline and names what it waited for, and the
browser's whole process group is killed on the way out, so a failing test neither hangs nor
leaves a chromium behind."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

STDERR_TAIL_CHARS = 3000
# Browser.close normally ends the browser in well under a second; past this it is killed.
CLOSE_GRACE_S = 5.0


def chromium_path() -> str | None:
    """The browser to drive: $DCCTL_CHROMIUM, else the first Chromium-like program on PATH."""
    configured = os.environ.get("DCCTL_CHROMIUM")
    if configured:
        return configured
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class _Pipe:
    """One browser's protocol connection: a reader thread files every reply and event under a
    condition, so the test thread waits on the condition with a deadline instead of blocking
    on a read that might never return."""

    def __init__(
        self,
        commands: int,
        replies: int,
        timeout_s: float,
        on_event: Callable[[dict[str, Any]], None],
        stderr_tail: Callable[[], str],
    ) -> None:
        self._commands = commands
        self._replies = replies
        self.timeout_s = timeout_s
        self._on_event = on_event
        self._stderr_tail = stderr_tail
        self._cond = threading.Condition()
        self._results: dict[int, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self._next_id = 0
        self.eof = False
        # Set once a wait ran out: a browser that stopped answering is not asked to close.
        self.timed_out = False
        self.reader_error: str | None = None
        self._reader = threading.Thread(target=self._read, name="chromium-cdp", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        buffer = b""
        try:
            while chunk := os.read(self._replies, 1 << 16):
                buffer += chunk
                *messages, buffer = buffer.split(b"\0")
                for raw in messages:
                    message: dict[str, Any] = json.loads(raw)
                    with self._cond:
                        if "id" in message:
                            self._results[message["id"]] = message
                        else:
                            self._on_event(message)
                            self.events.append(message)
                        self._cond.notify_all()
        except Exception as error:  # reported by the waiters: this thread has no caller
            self.reader_error = f"{type(error).__name__}: {error}"
        finally:
            with self._cond:
                self.eof = True
                self._cond.notify_all()

    def wait_for(
        self, predicate: Callable[[], bool], what: str, timeout_s: float | None = None
    ) -> None:
        """Returns once `predicate` (called under the lock) holds; raises naming `what` if the
        browser is gone or the timeout passes first."""
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not predicate():
                if self.reader_error:
                    raise AssertionError(
                        f"reading chromium's replies failed while waiting for {what}: "
                        f"{self.reader_error}"
                    )
                if self.eof:
                    raise AssertionError(
                        f"chromium exited while waiting for {what}; its stderr ends:\n"
                        f"{self._stderr_tail()}"
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    self.timed_out = True
                    raise TimeoutError(
                        f"chromium gave no {what} within {timeout_s:g} s; its stderr ends:\n"
                        f"{self._stderr_tail()}"
                    )
                self._cond.wait(left)

    def send(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> int:
        with self._cond:
            self._next_id += 1
            command_id = self._next_id
        message: dict[str, Any] = {"id": command_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        try:
            while data:
                data = data[os.write(self._commands, data) :]
        except OSError as error:
            raise AssertionError(
                f"cannot send {method} to chromium ({error}); its stderr ends:\n"
                f"{self._stderr_tail()}"
            ) from error
        return command_id

    def call(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> dict[str, Any]:
        """Sends a command and returns its result; a protocol error raises AssertionError."""
        command_id = self.send(method, params, session)
        self.wait_for(lambda: command_id in self._results, f"reply to {method}")
        with self._cond:
            reply = self._results.pop(command_id)
        if "error" in reply:
            raise AssertionError(f"chromium refused {method}: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    def event_count(self) -> int:
        with self._cond:
            return len(self.events)

    def wait_event(
        self,
        method: str,
        since: int,
        session: str | None = None,
        match: Callable[[dict[str, Any]], bool] = lambda _: True,
    ) -> dict[str, Any]:
        """The first event `method` received after the first `since` events."""
        found: list[dict[str, Any]] = []

        def arrived() -> bool:
            for event in self.events[since:]:
                if (
                    event.get("method") == method
                    and event.get("sessionId") == session
                    and match(event.get("params", {}))
                ):
                    found.append(event)
                    return True
            return False

        self.wait_for(arrived, f"{method} event")
        return found[0]

    def join(self, timeout_s: float) -> None:
        self._reader.join(timeout_s)


class BrowserPage:
    """One page open in the browser, and what it did while loading and since.

    `requests` lists every URL the page asked for, its own file:// URL first, whether or not
    the request then succeeded: data: URLs are listed too (Chromium reports them as requests),
    and so are loads a Content-Security-Policy blocked, which also land in `failed`."""

    def __init__(self, pipe: _Pipe, session: str, workdir: Path) -> None:
        self._pipe = pipe
        self._session = session
        # The browser's temporary home (profile, crash database, stderr), removed on exit;
        # every process the browser starts names it on its command line.
        self.workdir = workdir
        self.requests: list[str] = []
        self.failed: list[str] = []
        self.console_errors: list[str] = []
        self._request_urls: dict[str, str] = {}

    def _event(self, message: dict[str, Any]) -> None:
        # Called on the reader thread for every event, before any waiter sees it.
        if message.get("sessionId") != self._session:
            return
        method = message.get("method")
        params: dict[str, Any] = message.get("params", {})
        if method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            # A redirect reuses the request id; each hop is a request of its own.
            self._request_urls[params["requestId"]] = url
            self.requests.append(url)
        elif method == "Network.loadingFailed":
            self.failed.append(self._request_urls.get(params["requestId"], params["requestId"]))
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.console_errors.append(
                details.get("exception", {}).get("description") or details.get("text", "")
            )
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.console_errors.append(" ".join(_remote_text(arg) for arg in params["args"]))
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            entry = params["entry"]
            where = f" ({entry['url']})" if entry.get("url") else ""
            self.console_errors.append(f"{entry.get('text', '')}{where}")

    @property
    def timeout_s(self) -> float:
        """How long each wait on the browser may take from now on (open_page's timeout_s)."""
        return self._pipe.timeout_s

    @timeout_s.setter
    def timeout_s(self, value: float) -> None:
        self._pipe.timeout_s = value

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """A raw protocol command on this page, for what the helpers below do not cover."""
        return self._pipe.call(method, params, self._session)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises are awaited); a throw
        raises AssertionError with the exception's text."""
        result = self.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise AssertionError(f"{expression!r} threw: {text}")
        return result["result"].get("value")

    def screenshot(self, path: Path, full_page: bool = True) -> None:
        """A PNG of the viewport, or of the whole page however long it is."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            metrics = self.call("Page.getLayoutMetrics")
            # cssContentSize is in CSS pixels, which is what a clip is measured in;
            # contentSize is in device pixels and only equal at a device scale of 1.
            size = metrics.get("cssContentSize") or metrics["contentSize"]
            params["clip"] = {
                "x": 0,
                "y": 0,
                "width": size["width"],
                "height": size["height"],
                "scale": 1,
            }
            params["captureBeyondViewport"] = True
        data = self.call("Page.captureScreenshot", params)["data"]
        path.write_bytes(base64.b64decode(data))

    def pdf(self) -> bytes:
        """The page printed as the print dialog would, without background colours and images:
        what an office printer puts on paper."""
        data = self.call("Page.printToPDF", {"printBackground": False})["data"]
        return base64.b64decode(data)


def _remote_text(arg: dict[str, Any]) -> str:
    if "value" in arg:
        return str(arg["value"])
    return str(arg.get("description", arg.get("type", "")))


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-STDERR_TAIL_CHARS:]
    except OSError:
        return "(no stderr)"


@contextmanager
def open_page(
    html: Path, width: int = 1400, height: int = 1000, timeout_s: float = 30.0
) -> Iterator[BrowserPage]:
    """Opens `html` in a fresh headless Chromium and yields the page once it has loaded.

    Network, Runtime, Page and Log are enabled before navigating, so `requests` holds every
    request from the page's own file:// URL on. The browser is closed, killed if need be, and
    its profile removed on exit, whether or not the body raised."""
    browser = chromium_path()
    if browser is None:
        raise AssertionError("no chromium found: set DCCTL_CHROMIUM or install chromium")
    workdir = Path(tempfile.mkdtemp(prefix="dcctl-chromium-"))
    stderr_path = workdir / "chromium.stderr"
    args = [
        browser,
        "--headless=new",
        "--no-sandbox",  # the tests run as root, where Chromium's sandbox refuses to start
        "--disable-gpu",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        # A scrollbar would eat 15 px of a full-page screenshot's width and show in it.
        "--hide-scrollbars",
        f"--user-data-dir={workdir / 'profile'}",
        f"--window-size={width},{height}",
        "--remote-debugging-pipe",
        "about:blank",
    ]
    # Chromium keeps its crash database under $XDG_CONFIG_HOME/chromium whatever the
    # --user-data-dir, and its crashpad handler runs in a session of its own: pointing the
    # XDG folders here keeps the run off $HOME and gives every process it starts the
    # workdir on its command line, which is how the exit finds the strays.
    env = {**os.environ, "XDG_CONFIG_HOME": str(workdir), "XDG_CACHE_HOME": str(workdir)}
    commands_read, commands_write = os.pipe()
    replies_read, replies_write = os.pipe()
    process: subprocess.Popen[bytes] | None = None
    pipe: _Pipe | None = None
    try:
        with stderr_path.open("wb") as stderr:
            # The shell moves the two pipes from stdin/stdout onto fds 3 and 4, where Chromium
            # looks for them, without a preexec_fn (unsafe once threads run). A session of its
            # own lets the exit kill the renderers and helpers along with the browser.
            process = subprocess.Popen(
                ["/bin/sh", "-c", 'exec "$@" 3<&0 4>&1 0</dev/null 1>&2', "sh", *args],
                stdin=commands_read,
                stdout=replies_write,
                stderr=stderr,
                env=env,
                start_new_session=True,
            )
        os.close(commands_read)
        os.close(replies_write)
        commands_read = replies_write = -1

        page_holder: list[BrowserPage] = []

        def on_event(message: dict[str, Any]) -> None:
            if page_holder:
                page_holder[0]._event(message)

        pipe = _Pipe(commands_write, replies_read, timeout_s, on_event, lambda: _tail(stderr_path))
        page = _attach(pipe, page_holder, workdir)
        # --window-size sizes the whole headless window, of which the page got 1400x857 out
        # of 1400x1000: the viewport is set exactly, and at one device pixel per CSS pixel.
        metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
        page.call("Emulation.setDeviceMetricsOverride", metrics)
        _navigate(pipe, page, html)
        yield page
    finally:
        for fd in (commands_read, replies_write):
            if fd >= 0:
                os.close(fd)
        _close(pipe, process)
        _kill_strays(workdir)
        for fd in (commands_write, replies_read):
            with contextlib.suppress(OSError):
                os.close(fd)
        shutil.rmtree(workdir, ignore_errors=True)


def _attach(pipe: _Pipe, page_holder: list[BrowserPage], workdir: Path) -> BrowserPage:
    since = pipe.event_count()
    pipe.call("Target.setDiscoverTargets", {"discover": True})
    # Discovery reports the targets that already exist too, so the about:blank tab shows up
    # here whether or not it was created before this command arrived.
    created = pipe.wait_event(
        "Target.targetCreated", since, match=lambda p: p["targetInfo"]["type"] == "page"
    )
    target = created["params"]["targetInfo"]["targetId"]
    session: str = pipe.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
        "sessionId"
    ]
    page = BrowserPage(pipe, session, workdir)
    page_holder.append(page)
    for domain in ("Network", "Runtime", "Page", "Log"):
        page.call(f"{domain}.enable")
    return page


def _navigate(pipe: _Pipe, page: BrowserPage, html: Path) -> None:
    url = html.resolve().as_uri()
    since = pipe.event_count()
    navigated = page.call("Page.navigate", {"url": url})
    if navigated.get("errorText"):
        raise AssertionError(f"chromium could not open {url}: {navigated['errorText']}")
    frame = navigated["frameId"]
    pipe.wait_event("Page.loadEventFired", since, session=page._session)
    # loadEventFired is per session, not per document: make sure it was this document's.
    state = page.evaluate(
        "new Promise(done => document.readyState === 'complete' ? done(location.href)"
        " : addEventListener('load', () => done(location.href)))"
    )
    if state != url:
        raise AssertionError(f"chromium shows {state!r} in frame {frame}, not {url}")


def _close(pipe: _Pipe | None, process: subprocess.Popen[bytes] | None) -> None:
    if process is None:
        return
    try:
        asked = pipe is not None and not (pipe.eof or pipe.timed_out)
        if pipe is not None and asked:
            with contextlib.suppress(AssertionError, TimeoutError):
                pipe.send("Browser.close")
                # The pipe ends when the browser process does: nothing else holds it.
                pipe.wait_for(lambda: pipe.eof, "exit after Browser.close", CLOSE_GRACE_S)
        # A browser that stopped answering gets no grace, one that was asked to close does.
        stops: list[Callable[[], None] | None] = [process.terminate, process.kill]
        if asked:
            stops.insert(0, None)
        for stop in stops:
            if stop is not None:
                stop()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(CLOSE_GRACE_S)
                break
    finally:
        # The zygotes and renderers share the browser's process group and can outlive it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        if pipe is not None:
            pipe.join(CLOSE_GRACE_S)


def live_processes_naming(path: Path) -> list[int]:
    """Processes, zombies aside, whose command line mentions `path`."""
    needle = str(path).encode()
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if needle not in cmdline.read_bytes():
                continue
            state = (cmdline.parent / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if state != "Z":
            found.append(int(cmdline.parent.name))
    return found


def _kill_strays(workdir: Path) -> None:
    # A browser that was killed rather than closed can leave the crashpad handler behind,
    # outside its process group; exited processes await their reaper (init) as zombies.
    for pid in live_processes_naming(workdir):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
