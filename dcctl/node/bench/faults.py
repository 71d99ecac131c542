"""Injected faults: the DCCTL_FAULT spec the controller reads, and the fault a worker applies.

A fault makes a healthy cluster look sick in one known way, so the evaluators' verdicts (which
rank, which host, which step) can be checked end to end on real hardware. One spec, set by
whoever runs the controller:

    bitflip:rank=R,step=S      rank R flips one bit of one parameter after optimizer step S
    slow:rank=R,ms=M           rank R sleeps M ms every step, outside the gradient allreduce
    die:rank=R,step=S          rank R kills itself with SIGKILL at step S
    slow-link:host=NAME,ms=M   every rank on inventory host NAME sleeps M ms before each
                               collective it times (certify: before each step's backward)

Ranks are global ranks; steps count from 1. The controller sends the parsed dict inside the
worker params (`"fault"`), and a slow-link fault only to the named host's node, so a worker
applies a slow-link fault it receives to every one of its ranks.

The controller and the node runtime both import this module: standard library only, Python 3.8.
"""

from __future__ import annotations

import math
import re
from typing import Any

FAULT_ENV = "DCCTL_FAULT"

# Each kind and the keys it takes, all required.
KINDS: dict[str, tuple[str, ...]] = {
    "bitflip": ("rank", "step"),
    "slow": ("rank", "ms"),
    "die": ("rank", "step"),
    "slow-link": ("host", "ms"),
}
FIELDS = ("rank", "step", "ms", "host")
FORMS = "bitflip:rank=R,step=S | slow:rank=R,ms=M | die:rank=R,step=S | slow-link:host=NAME,ms=M"
# A sleep longer than this per step is no longer a slow rank but a hung one: the collectives'
# timeout would end the run instead of the evaluators judging it.
MAX_MS = 60_000.0
# Inventory host names: what an inventory may spell (letters, digits, and . _ - : for names,
# addresses and IPv6), never a separator of the spec itself.
_HOST = re.compile(r"[A-Za-z0-9._:\[\]-]+\Z")
_DIGITS = re.compile(r"[0-9]+\Z")


class BadFault(ValueError):
    """A fault spec or fault dict that names no known fault."""


def _bad(problem: str) -> BadFault:
    return BadFault(f"{FAULT_ENV}: {problem} (accepted: {FORMS})")


def _int(key: str, text: str, least: int) -> int:
    if not _DIGITS.match(text) or int(text) < least:
        raise _bad(f"{key} must be an integer >= {least}, got {text!r}")
    return int(text)


def _ms(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (0 < value <= MAX_MS):
        raise _bad(f"ms must be a number of milliseconds in (0, {MAX_MS:g}], got {text!r}")
    return value


def _host(text: str) -> str:
    if not _HOST.match(text):
        raise _bad(f"host must be an inventory host name, got {text!r}")
    return text


def _value(key: str, text: str) -> Any:
    if key == "rank":
        return _int(key, text, 0)
    if key == "step":
        return _int(key, text, 1)
    if key == "ms":
        return _ms(text)
    return _host(text)


def _pairs(kind: str, body: str) -> dict[str, Any]:
    """Each key's value, checked in the order written, so the first problem is the one named."""
    pairs: dict[str, Any] = {}
    for item in body.split(","):
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not key or not value:
            raise _bad(f"{item.strip()!r} is not key=value")
        if key not in KINDS[kind]:
            raise _bad(f"{kind} takes {' and '.join(KINDS[kind])}, not {key!r}")
        if key in pairs:
            raise _bad(f"{key} given twice")
        pairs[key] = _value(key, value)
    return pairs


def parse_fault(text: str) -> dict[str, Any]:
    """The fault a DCCTL_FAULT value names: {"kind", "rank", "step", "ms", "host"}, the keys
    the kind does not take set to None. BadFault says what is wrong, in one line."""
    kind, sep, body = text.strip().partition(":")
    kind = kind.strip()
    if kind not in KINDS:
        raise _bad(f"unknown fault {kind!r}" if kind else "empty fault")
    if not sep or not body.strip():
        raise _bad(f"{kind} needs {' and '.join(KINDS[kind])}")
    pairs = _pairs(kind, body)
    missing = [key for key in KINDS[kind] if key not in pairs]
    if missing:
        raise _bad(f"{kind} needs {' and '.join(missing)}")
    fault: dict[str, Any] = dict.fromkeys(FIELDS)
    fault["kind"] = kind
    fault.update(pairs)
    return fault


def _field_text(key: str, value: Any) -> str:
    """A dict field back in spec form, refusing what the spec could not have produced."""
    if key in ("rank", "step") and type(value) is not int:
        raise _bad(f"{key} must be an integer, got {value!r}")
    if key == "ms" and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise _bad(f"ms must be a number, got {value!r}")
    if key == "host" and not isinstance(value, str):
        raise _bad(f"host must be a string, got {value!r}")
    if key == "host":
        _host(value)  # before it is joined into a spec, where a comma would split it
    return repr(float(value)) if key == "ms" else str(value)


def check_fault(value: Any) -> dict[str, Any] | None:
    """A fault dict as sent in worker params (None: no fault), checked as strictly as the spec:
    the same dict parse_fault gives, or BadFault."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _bad(f"a fault is an object, got {type(value).__name__}")
    kind = value.get("kind")
    if kind not in KINDS:
        raise _bad(f"unknown fault {kind!r}")
    unknown = sorted(set(value) - set(FIELDS) - {"kind"})
    if unknown:
        raise _bad(f"unknown fault keys: {', '.join(map(str, unknown))}")
    extra = [key for key in FIELDS if key not in KINDS[kind] and value.get(key) is not None]
    if extra:
        raise _bad(f"{kind} takes {' and '.join(KINDS[kind])}, not {extra[0]!r}")
    missing = [key for key in KINDS[kind] if value.get(key) is None]
    if missing:
        raise _bad(f"{kind} needs {' and '.join(missing)}")
    spec = ",".join(f"{key}={_field_text(key, value[key])}" for key in KINDS[kind])
    return parse_fault(f"{kind}:{spec}")


def for_rank(fault: dict[str, Any] | None, rank: int) -> dict[str, Any] | None:
    """The fault this rank applies: a rank fault that names it, or a host fault (slow-link),
    which reaches a worker only on the host it names; None otherwise."""
    if fault is None:
        return None
    if fault.get("rank") is None:
        return fault
    return fault if fault["rank"] == rank else None
