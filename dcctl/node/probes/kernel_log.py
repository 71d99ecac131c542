"""Kernel log: NVIDIA XIDs, NVSwitch SXids and mlx5 "PCIe bandwidth limited" lines in a window.

Reader: the journal (`journalctl -k`), else the ring buffer (`dmesg`), each under a short
timeout; under DCCTL_SYSROOT the recorded `dcctl-recorded/kmsg.txt`, whose newest line is
taken as "now". Parser: pure, ISO-timestamped lines (journal short-iso or dmesg iso) -> events.

Both live sources cover the current boot only: `journalctl -k` implies `--boot`, and the ring
buffer starts at boot (and drops its oldest lines when it wraps). So the window searched is
"since boot, at most window_h hours": an XID logged before the last reboot is not seen, and
the evaluator words its messages that way when the node booted within the window. Reading
either needs root, membership of systemd-journal (or adm), or kernel.dmesg_restrict=0; when
neither is readable the facts say why (`source: none`, `error`).
"""

from __future__ import annotations

import re
import subprocess
from collections import deque
from datetime import datetime, timedelta, timezone
from typing import Any

from dcctl.node.sysroot import RECORDED_DIR, active_sysroot, recorded_output

COMMAND_TIMEOUT_S = 3.0
RECORDED_NAME = "kmsg.txt"
EVENT_KINDS = ("xids", "sxids", "pcie_bandwidth_limited")
# An application faulting in a loop can log one XID thousands of times a day; past this many
# events per (kind, device, number) only a count of the older ones travels back, so the
# payload stays small and the newest events (what an operator looks at first) are kept.
MAX_EVENTS_PER_KEY = 20
# Distinct keys listed per kind: a node has a few GPUs, switches and NICs, so a log naming more
# is garbled or hostile. Events of keys past the cap are only counted, per XID or SXid number
# (`left_out`), at most MAX_LEFT_OUT_CODES numbers per kind; the rest under the number None.
# The payload stays bounded however large the log, and the controller still sees every number.
MAX_KEYS_PER_KIND = 100
MAX_LEFT_OUT_CODES = 100
# Keys past the cap are told apart (counted once each in `keys`) up to this many, so the
# parser's memory stays bounded however many distinct keys a log names; past it, every event
# of a key not yet seen counts as a new key: `keys` may then exceed the number of distinct keys
# (never `count`), so the controller's verdict is never milder for it.
MAX_LEFT_OUT_TRACKED = 10_000
# Kernel lines are a few hundred characters; a longer one is cut, its start kept.
MAX_TEXT_CHARS = 400

# journalctl short-iso: "2024-05-01T12:34:56+0000 host kernel: msg" (newer systemd: +00:00);
# dmesg --time-format iso: "2024-05-01T12:34:56,123456+00:00 msg".
_LINE_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?(Z|[+-]\d{2}:?\d{2})?\s+(.*)$"
)
_JOURNAL_PREFIX_RE = re.compile(r"^\S+ kernel: ")
_PCI = r"[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}(?:\.[0-7])?"
# Patterns searched for anywhere in a line match a bounded width (numbers of at most 10
# digits, no `.*`): a search then costs at most that width per character of the line, linear
# however the line is built. What follows a match is read from the match's end.
_NUMBER = r"\d{1,10}"
# Older drivers print "Xid (0000:01:00)", current ones "Xid (PCI:0000:18:00)".
_XID_RE = re.compile(rf"NVRM: Xid \((?:PCI:)?({_PCI})\): ({_NUMBER}),")
_PID_NAME_RE = re.compile(r"\s*pid=([^,]*), name=([^,]*),")
# Only the first line of an SXid event names its severity; the "Severity N ..." and
# "Data {...}" lines that follow repeat the number and must not count as more events.
_SXID_RE = re.compile(
    rf"(nvidia-nvswitch{_NUMBER}): SXid \(PCI:({_PCI})\): ({_NUMBER}), (Non-fatal|Fatal),"
)
# The PCI core prints "mlx5_core <pci>: ... available PCIe bandwidth, limited by ..." when the
# NIC is probed (boot, driver reload): a link degraded since a boot older than the window is not
# seen here. Found as the phrase, then the device before it: one regex with `.*` between the
# two retried the whole rest of the line at every "mlx5_core" (quadratic on a long line).
_MLX5_DEVICE_RE = re.compile(rf"mlx5_core ({_PCI}): ")
_MLX5_LIMITED = "available PCIe bandwidth, limited by"
LINE_SEARCHES = (_XID_RE, _SXID_RE, _MLX5_DEVICE_RE)
# The key field that names the event's number, per kind; left-out events are counted by it.
_CODE_FIELDS = {"xids": "xid", "sxids": "sxid"}
_UNKNOWN = "<unknown>"


def _parse_line(line: str) -> tuple[datetime, str] | None:
    """(time, message) of one timestamped line; None for lines without an ISO timestamp."""
    match = _LINE_RE.match(line)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, offset, rest = match.groups()
    micro = int(fraction[:6].ljust(6, "0")) if fraction else 0
    zone = timezone.utc
    if offset and offset != "Z":
        digits = offset[1:].replace(":", "")
        delta = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        zone = timezone(-delta if offset[0] == "-" else delta)
    moment = datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second), micro, zone
    )
    return moment, _JOURNAL_PREFIX_RE.sub("", rest, count=1)


def newest_time(text: str) -> datetime | None:
    """The latest timestamp in the log: "now" for a recorded log."""
    times = [parsed[0] for parsed in map(_parse_line, text.splitlines()) if parsed is not None]
    return max(times, default=None)


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT_CHARS else text[: MAX_TEXT_CHARS - 1] + "…"


def _xid_event(match: re.Match[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    key: dict[str, Any] = {"xid": int(match.group(2)), "pci": match.group(1).lower()}
    extra: dict[str, Any] = {}
    # Anchored at the match's end: linear, unlike a search with `[^,]*` over the line.
    process = _PID_NAME_RE.match(match.string, match.end())
    if process is not None:
        pid, name = (part.strip().strip("'") for part in process.groups())
        if pid.isdigit():
            extra["pid"] = int(pid)
        if name and name != _UNKNOWN:
            extra["name"] = _clip(name)
    return key, extra


def _match_event(message: str) -> tuple[str, dict[str, Any], dict[str, Any]] | None:
    """(kind, key fields, other fields) for a line that reports an event, else None."""
    xid = _XID_RE.search(message)
    if xid is not None:
        return ("xids", *_xid_event(xid))
    sxid = _SXID_RE.search(message)
    if sxid is not None:
        key = {"sxid": int(sxid.group(3)), "device": sxid.group(2).lower()}
        return "sxids", key, {"switch": sxid.group(1), "fatal": sxid.group(4) == "Fatal"}
    limited_at = message.rfind(_MLX5_LIMITED)
    device = _MLX5_DEVICE_RE.search(message, 0, limited_at) if limited_at >= 0 else None
    if device is not None:
        return "pcie_bandwidth_limited", {"device": device.group(1).lower()}, {}
    return None


class _Events:
    """Events per kind, capped per key to the newest MAX_EVENTS_PER_KEY (the older ones the
    cap drops are counted in `omitted`) and to MAX_KEYS_PER_KIND keys (`left_out`)."""

    def __init__(self) -> None:
        self._order = 0
        # (kind, *key values) -> the key's newest events, each with its place in the log.
        self._kept: dict[tuple[Any, ...], deque[tuple[int, dict[str, Any]]]] = {}
        self._seen: dict[tuple[Any, ...], int] = {}
        self._keys: dict[tuple[Any, ...], tuple[str, dict[str, Any]]] = {}
        # Keys one of whose events the per-key cap dropped was fatal (SXids).
        self._fatal_dropped: set[tuple[Any, ...]] = set()
        self._keys_per_kind = dict.fromkeys(EVENT_KINDS, 0)
        self._left_out = _LeftOut()

    def add(self, kind: str, key: dict[str, Any], event: dict[str, Any]) -> None:
        ident = (kind, *key.values())
        if ident not in self._kept:
            if self._keys_per_kind[kind] >= MAX_KEYS_PER_KIND:
                self._left_out.add(kind, ident, key, event)
                return
            self._keys_per_kind[kind] += 1
            self._kept[ident] = deque(maxlen=MAX_EVENTS_PER_KEY)
            self._keys[ident] = (kind, key)
        self._seen[ident] = self._seen.get(ident, 0) + 1
        kept = self._kept[ident]
        if len(kept) == kept.maxlen and kept[0][1].get("fatal"):
            self._fatal_dropped.add(ident)  # the append below drops it
        kept.append((self._order, {**key, **event}))
        self._order += 1

    def lists(self) -> dict[str, list[dict[str, Any]]]:
        """The kept events per kind, in log order."""
        lists: dict[str, list[tuple[int, dict[str, Any]]]] = {kind: [] for kind in EVENT_KINDS}
        for ident, kept in self._kept.items():
            lists[self._keys[ident][0]].extend(kept)
        return {kind: [event for _, event in sorted(found)] for kind, found in lists.items()}

    def omitted(self) -> list[dict[str, Any]]:
        """{kind, key fields, count} per key whose older events the cap dropped; for SXids
        also `fatal`: whether any of those was (the kept ones may all be non-fatal)."""
        return [
            self._omitted(ident, kind, key)
            for ident, (kind, key) in self._keys.items()
            if self._seen[ident] > len(self._kept[ident])
        ]

    def _omitted(self, ident: tuple[Any, ...], kind: str, key: dict[str, Any]) -> dict[str, Any]:
        entry = {"kind": kind, **key, "count": self._seen[ident] - len(self._kept[ident])}
        if kind == "sxids":
            entry["fatal"] = ident in self._fatal_dropped
        return entry

    def left_out(self) -> list[dict[str, Any]]:
        return self._left_out.groups()


class _LeftOut:
    """Events of keys past MAX_KEYS_PER_KIND, counted per (kind, number): {kind, xid|sxid,
    keys, count}, and for SXids whether any was fatal."""

    def __init__(self) -> None:
        self._idents: set[tuple[Any, ...]] = set()
        self._groups: dict[tuple[str, Any], dict[str, Any]] = {}
        self._codes_per_kind = dict.fromkeys(EVENT_KINDS, 0)

    def add(
        self, kind: str, ident: tuple[Any, ...], key: dict[str, Any], event: dict[str, Any]
    ) -> None:
        group = self._group(kind, key.get(_CODE_FIELDS[kind]) if kind in _CODE_FIELDS else None)
        if self._is_new(ident):
            group["keys"] += 1
        group["count"] += 1
        if event.get("fatal"):
            group["fatal"] = True

    def _is_new(self, ident: tuple[Any, ...]) -> bool:
        """Whether `ident` is a key not seen before; past MAX_LEFT_OUT_TRACKED keys, an
        untracked one always is (see there)."""
        if ident in self._idents:
            return False
        if len(self._idents) < MAX_LEFT_OUT_TRACKED:
            self._idents.add(ident)
        return True

    def _group(self, kind: str, code: Any) -> dict[str, Any]:
        found = self._groups.get((kind, code))
        if found is not None:
            return found
        if self._codes_per_kind[kind] >= MAX_LEFT_OUT_CODES:
            code = None  # past the cap the numbers themselves are not sent
        else:
            self._codes_per_kind[kind] += 1
        group: dict[str, Any] = {"kind": kind, "keys": 0, "count": 0}
        if kind in _CODE_FIELDS:
            group[_CODE_FIELDS[kind]] = code
        if kind == "sxids":
            group["fatal"] = False
        return self._groups.setdefault((kind, code), group)

    def groups(self) -> list[dict[str, Any]]:
        return list(self._groups.values())


def parse_kernel_log(
    text: str, now: datetime | None, window_h: float, source: str = "recorded"
) -> dict[str, Any]:
    """Kernel log lines -> {source, window_h, xids, sxids, pcie_bandwidth_limited}.

    Only lines from the `window_h` hours up to `now` count (None: the log's newest line).
    Each event carries its `time` (ISO 8601, as logged) and `text` (the message, cut at
    MAX_TEXT_CHARS). Past MAX_EVENTS_PER_KEY events for one key only the newest are listed;
    the older ones are counted in `omitted` as {kind, key fields, count} (SXids also with
    `fatal`). Past MAX_KEYS_PER_KIND keys of one kind, the events of further keys are counted
    in `left_out` as {kind, xid|sxid, keys, count} (SXids also with `fatal`).
    """
    reference = now if now is not None else newest_time(text)
    start = reference - timedelta(hours=window_h) if reference is not None else None
    events = _Events()
    for line in text.splitlines():
        # Cheap test first: a live log has thousands of lines and almost none of them match.
        if "Xid" not in line and "PCIe bandwidth" not in line:
            continue
        parsed = _parse_line(line)
        if parsed is None or (start is not None and parsed[0] < start):
            continue
        found = _match_event(parsed[1])
        if found is not None:
            kind, key, extra = found
            message = _clip(parsed[1])
            events.add(kind, key, {**extra, "text": message, "time": parsed[0].isoformat()})
    facts: dict[str, Any] = {"source": source, "window_h": window_h, **events.lists()}
    for name, counted in (("omitted", events.omitted()), ("left_out", events.left_out())):
        if counted:
            facts[name] = counted
    return facts


def _run(argv: list[str]) -> tuple[str | None, str]:
    """(stdout, "") when the command exited 0, else (None, why it could not be read)."""
    try:
        proc = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=COMMAND_TIMEOUT_S,
        )
    except FileNotFoundError:
        return None, f"{argv[0]}: not installed"
    except subprocess.TimeoutExpired:
        return None, f"{argv[0]}: no answer within {COMMAND_TIMEOUT_S:g} s"
    except OSError as exc:
        return None, f"{argv[0]}: {exc}"
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"]
        return None, lines[-1]
    return proc.stdout, ""


def _unreadable(window_h: float, error: str) -> dict[str, Any]:
    return {"source": "none", "window_h": window_h, "error": error}


def collect_kernel_log(window_h: float) -> dict[str, Any]:
    """parse_kernel_log's facts from the journal, else dmesg; {source: "none", error} if neither."""
    if active_sysroot() is not None:
        text = recorded_output(RECORDED_NAME)
        if text is None:
            return _unreadable(window_h, f"no recorded kernel log ({RECORDED_DIR}/{RECORDED_NAME})")
        return parse_kernel_log(text, None, window_h)
    now = datetime.now(timezone.utc)
    # Seconds, not hours: journalctl's time spans take no fractions like "1e-05h".
    since = f"--since=-{max(1, round(window_h * 3600))}s"
    journal, journal_error = _run(
        ["journalctl", "-k", since, "-o", "short-iso", "--no-pager", "-q"]
    )
    if journal:
        return parse_kernel_log(journal, now, window_h, "journal")
    # No journal, or an empty one: -q hides "insufficient permissions", so an empty answer
    # may mean "not allowed to read" rather than "nothing logged". The ring buffer tells.
    ring, dmesg_error = _run(["dmesg", "--time-format", "iso"])
    if ring is not None:
        return parse_kernel_log(ring, now, window_h, "dmesg")
    why = journal_error or "journalctl: no kernel messages"
    return _unreadable(window_h, f"{why}; {dmesg_error}")
