"""Kernel log: NVIDIA XIDs, NVSwitch SXids, NVRM GPU faults without an XID ("fallen off the
bus", "RmInitAdapter failed") and mlx5 "PCIe bandwidth limited" lines in a window.

Reader: the journal (`journalctl -k`), else the ring buffer (`dmesg --time-format iso`, else
plain `dmesg`), each under a short timeout; under DCCTL_SYSROOT the recorded
`dcctl-recorded/kmsg.txt`, whose newest dated line is taken as "now". Parser: pure, lines ->
events. Framings read: journal short-iso and dmesg iso (the reader's own), and, for logs
captured elsewhere or when only they are available: `dmesg -T` ("[Mon Jun  3 10:00:00 2024]",
the node's local time), plain dmesg ("[12345.678901]", seconds since boot) and syslog /
journal short ("Jun  3 10:00:00 host kernel: [12345.67] ..."; the year is not printed, so it
is the reference's year, or the one before for a date after the reference). A line that
starts with blanks continues the one before it (dmesg prints a multi-line message so) and
takes its time.

Seconds since boot are placed with the uptime (`/proc/uptime`, read through the sysroot):
such a line is in the window when it was logged less than window_h before the uptime, and
its `time` is boot + seconds when "now" is known. With no uptime it is counted as inside the
window (the log covers this boot only) and carries `since_boot_s` but no `time`.

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

from dcctl.node.sysroot import RECORDED_DIR, active_sysroot, read_text, recorded_output

COMMAND_TIMEOUT_S = 3.0
RECORDED_NAME = "kmsg.txt"
EVENT_KINDS = ("xids", "sxids", "nvrm_faults", "pcie_bandwidth_limited")
# NVRM messages that lose a GPU without an XID line of their own: the key's `fault`.
FALLEN_OFF_BUS = "fallen_off_bus"
INIT_FAILED = "init_failed"
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
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH = "(" + "|".join(_MONTHS) + ")"
_CLOCK = r"(\d{2}):(\d{2}):(\d{2})"
# dmesg -T / --ctime: "[Fri Aug 30 11:43:09 2024] msg", in the node's local time.
_CTIME_RE = re.compile(
    rf"^\[[A-Z][a-z]{{2}} {_MONTH} {{1,2}}(\d{{1,2}}) {_CLOCK} (\d{{4}})\] ?(.*)$"
)
# Plain dmesg: "[ 1843.308145] msg", seconds since boot.
_MONOTONIC_RE = re.compile(r"^\[ *(\d{1,10})\.(\d{1,9})\] ?(.*)$")
# syslog / journalctl -o short: "Dec  2 11:49:53 worker4 kernel: [  885.242168] msg".
_SYSLOG_RE = re.compile(rf"^{_MONTH} {{1,2}}(\d{{1,2}}) {_CLOCK} \S+ kernel: (.*)$")
_INNER_SECONDS_RE = re.compile(r"^\[ *\d{1,10}\.\d{1,9}\] ?")
_JOURNAL_PREFIX_RE = re.compile(r"^\S+ kernel: ")
_PCI = r"[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}(?:\.[0-7])?"
# Patterns searched for anywhere in a line match a bounded width (numbers of at most 10
# digits, no `.*`): a search then costs at most that width per character of the line, linear
# however the line is built. What follows a match is read from the match's end.
_NUMBER = r"\d{1,10}"
# Older drivers print "Xid (0000:01:00)", current ones "Xid (PCI:0000:18:00)"; on a MIG GPU the
# driver adds the GPU instance and compute instance it attributes the error to:
# "Xid (PCI:%04x:%02x:%02x GPU-I:%02u GPU-CI:%02u): %d, pid=%s, name=%s, %s" (open-gpu-kernel-
# modules), or " GPU-I:05" alone.
_XID_RE = re.compile(
    rf"NVRM: Xid \((?:PCI:)?({_PCI})(?: GPU-I:(\d{{1,4}}))?(?: GPU-CI:(\d{{1,4}}))?\): ({_NUMBER}),"
)
# "pid=1234, name=python, ", "pid='<unknown>', name=<unknown>, " or "pid=7194, " alone.
_PID_NAME_RE = re.compile(r"\s*pid=([^,]*),(?: name=([^,]*),)?")
# Only the first line of an SXid event names its severity; the "Severity N ..." and
# "Data {...}" lines that follow repeat the number and must not count as more events.
_SXID_RE = re.compile(
    rf"(nvidia-nvswitch{_NUMBER}): SXid \(PCI:({_PCI})\): ({_NUMBER}), (Non-fatal|Fatal),"
)
# NVRM lines that name a GPU by its full address: "NVRM: GPU 0000:3b:00.0: GPU has fallen off
# the bus.", "NVRM: GPU 0000:09:00.0: RmInitAdapter failed! (0x22:0x56:894)" and "NVRM: The
# NVIDIA GPU 0000:b3:00.0 (PCI ID: 10de:20b0) installed in this system has fallen off the bus
# and is not responding to commands." (open kernel modules print that one on three lines).
_NVRM_GPU_RE = re.compile(rf"NVRM: (The NVIDIA )?GPU ({_PCI})")
_FALLEN = "fallen off the bus"
_INIT_FAILED = "RmInitAdapter failed"
# The PCI core prints "mlx5_core <pci>: ... available PCIe bandwidth, limited by ..." when the
# NIC is probed (boot, driver reload): a link degraded since a boot older than the window is not
# seen here. Found as the phrase, then the device before it: one regex with `.*` between the
# two retried the whole rest of the line at every "mlx5_core" (quadratic on a long line).
_MLX5_DEVICE_RE = re.compile(rf"mlx5_core ({_PCI}): ")
_MLX5_LIMITED = "available PCIe bandwidth, limited by"
LINE_SEARCHES = (_XID_RE, _SXID_RE, _NVRM_GPU_RE, _MLX5_DEVICE_RE)
# The key field that names the event's number, per kind; left-out events are counted by it.
_CODE_FIELDS = {"xids": "xid", "sxids": "sxid"}
_UNKNOWN = "<unknown>"


def _iso(line: str) -> tuple[datetime, str] | None:
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


def _local(year: int, month: str, day: str, clock: tuple[str, ...]) -> datetime | None:
    """A wall-clock time the log printed without a zone, read in the node's local zone."""
    try:
        hour, minute, second = (int(part) for part in clock)
        naive = datetime(year, _MONTHS.index(month) + 1, int(day), hour, minute, second)
    except ValueError:  # "Feb 29" in a year that has none, a garbled day
        return None
    return naive.astimezone()


def _syslog(line: str, reference: datetime) -> tuple[datetime, str] | None:
    match = _SYSLOG_RE.match(line)
    if match is None:
        return None
    month, day, hour, minute, second, rest = match.groups()
    clock = (hour, minute, second)
    moment = _local(reference.year, month, day, clock)
    if moment is None:
        return None
    if moment > reference + timedelta(days=1):  # December's lines read in January
        moment = _local(reference.year - 1, month, day, clock) or moment
    return moment, _INNER_SECONDS_RE.sub("", rest, count=1)


def _parse_line(
    line: str, reference: datetime | None = None
) -> tuple[datetime | float, str] | None:
    """(when, message) of one framed line; None for a line with no framing dcctl reads.

    `reference`: "now", whose year a syslog line takes (syslog does not print it); None: the
    clock's."""
    parsed: tuple[datetime | float, str] | None = _iso(line)
    if parsed is not None:
        return parsed
    match = _CTIME_RE.match(line)
    if match is not None:
        month, day, hour, minute, second, year_text, rest = match.groups()
        moment = _local(int(year_text), month, day, (hour, minute, second))
        return (moment, rest) if moment is not None else None
    match = _MONOTONIC_RE.match(line)
    if match is not None:
        seconds, fraction, rest = match.groups()
        return float(f"{seconds}.{fraction}"), rest
    return _syslog(line, reference or datetime.now(timezone.utc))


def newest_time(text: str) -> datetime | None:
    """The latest wall-clock timestamp in the log: "now" for a recorded log."""
    times = [
        parsed[0]
        for parsed in map(_parse_line, text.splitlines())
        if parsed is not None and isinstance(parsed[0], datetime)
    ]
    return max(times, default=None)


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT_CHARS else text[: MAX_TEXT_CHARS - 1] + "…"


def _xid_event(match: re.Match[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    key: dict[str, Any] = {"xid": int(match.group(4)), "pci": match.group(1).lower()}
    extra: dict[str, Any] = {}
    for field, group in (("gpu_instance", 2), ("compute_instance", 3)):
        if match.group(group) is not None:
            extra[field] = int(match.group(group))
    # Anchored at the match's end: linear, unlike a search with `[^,]*` over the line.
    process = _PID_NAME_RE.match(match.string, match.end())
    if process is not None:
        pid = process.group(1).strip().strip("'")
        name = (process.group(2) or "").strip().strip("'")
        if pid.isdigit():
            extra["pid"] = int(pid)
        if name and name != _UNKNOWN:
            extra["name"] = _clip(name)
    return key, extra


def _nvrm_fault(message: str, pending: str | None) -> tuple[str | None, str | None]:
    """(fault, pci) for an NVRM line that loses a GPU without an XID, else (None, the GPU a
    multi-line "The NVIDIA GPU <pci>" message named, for its continuation lines)."""
    device = _NVRM_GPU_RE.search(message)
    rest = message[device.end() :] if device is not None else message
    pci = device.group(2).lower() if device is not None else pending
    if _FALLEN in rest and pci is not None:
        return FALLEN_OFF_BUS, pci
    if device is not None and rest.lstrip(": ").startswith(_INIT_FAILED):
        return INIT_FAILED, pci
    if device is not None and device.group(1):  # "The NVIDIA GPU <pci>": the rest follows
        return None, pci
    return None, pending


def _match_event(
    message: str, pending: str | None = None
) -> tuple[tuple[str, dict[str, Any], dict[str, Any]] | None, str | None]:
    """((kind, key fields, other fields) for a line that reports an event, else None; the GPU
    a multi-line NVRM message has named so far)."""
    xid = _XID_RE.search(message)
    if xid is not None:
        return ("xids", *_xid_event(xid)), None
    sxid = _SXID_RE.search(message)
    if sxid is not None:
        key = {"sxid": int(sxid.group(3)), "device": sxid.group(2).lower()}
        return ("sxids", key, {"switch": sxid.group(1), "fatal": sxid.group(4) == "Fatal"}), None
    if "NVRM" in message:
        fault, pci = _nvrm_fault(message, pending)
        if fault is not None:
            return ("nvrm_faults", {"fault": fault, "pci": pci}, {}), None
        return None, pci
    limited_at = message.rfind(_MLX5_LIMITED)
    device = _MLX5_DEVICE_RE.search(message, 0, limited_at) if limited_at >= 0 else None
    if device is not None:
        return ("pcie_bandwidth_limited", {"device": device.group(1).lower()}, {}), None
    return None, None


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
    text: str,
    now: datetime | None,
    window_h: float,
    source: str = "recorded",
    uptime_s: float | None = None,
) -> dict[str, Any]:
    """Kernel log lines -> {source, window_h, xids, sxids, nvrm_faults, pcie_bandwidth_limited}.

    Only lines from the `window_h` hours up to `now` count (None: the log's newest dated line);
    a line dated in seconds since boot counts when logged less than window_h before `uptime_s`
    (always, when the uptime is unknown). Each event carries its `time` (ISO 8601) where it can
    be placed, `since_boot_s` where the log printed that, and `text` (the message, cut at
    MAX_TEXT_CHARS). Past MAX_EVENTS_PER_KEY events for one key only the newest are listed;
    the older ones are counted in `omitted` as {kind, key fields, count} (SXids also with
    `fatal`). Past MAX_KEYS_PER_KIND keys of one kind, the events of further keys are counted
    in `left_out` as {kind, xid|sxid, keys, count} (SXids also with `fatal`).
    """
    reference = now if now is not None else newest_time(text)
    start = reference - timedelta(hours=window_h) if reference is not None else None
    boot = reference - timedelta(seconds=uptime_s) if reference and uptime_s is not None else None
    events = _Events()
    last: tuple[datetime | float, str] | None = None
    pending: str | None = None
    for line in text.splitlines():
        # Cheap test first: a live log has thousands of lines and almost none of them match.
        if "Xid" not in line and "NVRM" not in line and "PCIe bandwidth" not in line:
            last, pending = None, None  # a continuation follows the line right before it
            continue
        parsed = _parse_line(line, reference)
        if parsed is None and last is not None and line[:1].isspace():
            parsed = (last[0], line.strip())  # dmesg's continuation of a multi-line message
        last = parsed
        if parsed is None:
            continue
        when, message = parsed
        found, pending = _match_event(message, pending)
        if found is None or not _in_window(when, start, window_h, uptime_s):
            continue
        kind, key, extra = found
        event = {**extra, "text": _clip(message)}
        if isinstance(when, datetime):
            event["time"] = when.isoformat()
        else:
            event["since_boot_s"] = when
            if boot is not None:
                event["time"] = (boot + timedelta(seconds=when)).isoformat()
        events.add(kind, key, event)
    facts: dict[str, Any] = {"source": source, "window_h": window_h, **events.lists()}
    for name, counted in (("omitted", events.omitted()), ("left_out", events.left_out())):
        if counted:
            facts[name] = counted
    return facts


def _in_window(
    when: datetime | float, start: datetime | None, window_h: float, uptime_s: float | None
) -> bool:
    if isinstance(when, datetime):
        return start is None or when >= start
    return uptime_s is None or when >= uptime_s - window_h * 3600


def _uptime_s() -> float | None:
    """Seconds since boot from /proc/uptime (through the sysroot), None when unreadable."""
    text = read_text("/proc/uptime")
    try:
        return float(text.split()[0]) if text else None
    except ValueError:
        return None


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
        return parse_kernel_log(text, None, window_h, uptime_s=_uptime_s())
    now = datetime.now(timezone.utc)
    uptime = _uptime_s()
    # Seconds, not hours: journalctl's time spans take no fractions like "1e-05h".
    since = f"--since=-{max(1, round(window_h * 3600))}s"
    journal, journal_error = _run(
        ["journalctl", "-k", since, "-o", "short-iso", "--no-pager", "-q"]
    )
    if journal:
        return parse_kernel_log(journal, now, window_h, "journal", uptime)
    # No journal, or an empty one: -q hides "insufficient permissions", so an empty answer
    # may mean "not allowed to read" rather than "nothing logged". The ring buffer tells.
    ring, dmesg_error = _run(["dmesg", "--time-format", "iso"])
    if ring is None:
        # busybox and old util-linux dmesg know no --time-format: seconds since boot then.
        ring, plain_error = _run(["dmesg"])
        dmesg_error = dmesg_error if ring is None else plain_error
    if ring is not None:
        return parse_kernel_log(ring, now, window_h, "dmesg", uptime)
    why = journal_error or "journalctl: no kernel messages"
    return _unreadable(window_h, f"{why}; {dmesg_error}")
