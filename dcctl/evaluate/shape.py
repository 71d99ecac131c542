"""The shape of a node's facts, checked once before any evaluator reads them.

Evaluators index what the node runtime sends (`mount["mountpoint"]`, `n <= limit`): a payload
of another shape (a broken or hostile node) would end the host as "evaluating results failed:
KeyError". Here each top-level fact is checked against FACTS: the types of what evaluators
read, nothing more. A fact of the wrong shape is dropped as its probe failing would drop it
(set to None, with a `probe_errors` line, so the checks that read it say why they cannot
judge) and reported as one `payload.shape` error; the other facts are judged as usual.

Counts that only say how many (kernel-log `count`, `keys`) are not checked here: the
evaluators read them through bounds.node_count, so an odd one never hides what it counts.
Lists are checked after bounds.bound_facts has cut them, so this costs bounded work too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeAlias

from dcctl.evaluate.result import Result

# Past this no reading is real, and formatting it as a float (f"{n:g}") would overflow.
MAX_MAGNITUDE = 2**63


@dataclass(frozen=True)
class Number:
    """An int or a float, finite and within MAX_MAGNITUDE; a boolean is none. NaN would pass
    every `reading > limit` test, and a negative counter would cancel another in a sum."""

    minimum: float = -MAX_MAGNITUDE
    expected: str = "a finite number"


NUMBER = Number()
COUNT = Number(0, "a count (0 or more)")


@dataclass(frozen=True)
class Of:
    """A list whose entries each have the shape `item`."""

    item: Shape


@dataclass(frozen=True)
class Keys:
    """An object whose listed keys, where present and not None, have their shapes; the keys
    in `required` must be present and not None."""

    fields: dict[str, Shape] = field(default_factory=dict)
    required: tuple[str, ...] = ()


# A type (bool is never an int here), a number, a list or an object.
Shape: TypeAlias = type | Number | Of | Keys

_NVLINK = Keys({name: COUNT for name in ("replay", "recovery", "crc_flit", "crc_data")})
_GPU = Keys(
    {
        # Both are dict keys and compared with one another's.
        "index": int,
        "vbios": str,
        "processes": Of(Keys()),
        "ecc": Keys({"volatile_uncorrected": COUNT, "volatile_corrected": COUNT}),
        "row_remap": Keys(),
        "retired_pages": Keys(),
        "pcie": Keys({name: COUNT for name in ("width", "width_max", "gen", "gen_max", "replays")}),
        "clock_events": list,
        "temperature_c": NUMBER,
        "temperature_slowdown_c": NUMBER,
        "power_w": NUMBER,
        "power_limit_w": NUMBER,
        "nvlink": Of(_NVLINK),
        "fabric": Keys(required=("state",)),
    }
)
# XID and SXid numbers and the addresses beside them are dict keys and sorted.
_XID = Keys({"xid": int, "pci": str}, required=("xid", "pci"))
_SXID = Keys({"sxid": int, "device": str}, required=("sxid", "device"))
_COUNTED = Keys({"kind": str, "xid": int, "pci": str, "sxid": int, "device": str})
_KERNEL_LOG = Keys(
    {
        "window_h": NUMBER,
        "xids": Of(_XID),
        "sxids": Of(_SXID),
        "pcie_bandwidth_limited": Of(Keys({"device": str}, required=("device",))),
        "omitted": Of(_COUNTED),
        "left_out": Of(_COUNTED),
    }
)
_MOUNT = Keys({"mountpoint": str, "options": list}, required=("mountpoint", "fstype", "device"))
_IB_PORT = Keys({"rate_gbps": NUMBER, "counters": Keys({"link_downed": COUNT})})

# Top-level fact -> (its shape, the probe that sends it: a malformed fact is that probe's error).
FACTS: dict[str, tuple[Shape, str]] = {
    "os": (Keys({"pretty_name": str}), "os"),
    "kernel": (str, "kernel"),
    "memory": (Keys({"total_gb": NUMBER}), "memory"),
    "swap": (Keys({"total_gb": NUMBER, "used_gb": NUMBER}), "memory"),
    "driver": (str, "gpu"),
    "cuda": (str, "gpu"),
    "gpus": (Of(_GPU), "gpu"),
    "nvml_error": (Keys(), "gpu"),
    "mounts": (Of(_MOUNT), "mounts"),
    "scratch": (Keys({"free_gb": NUMBER}), "scratch"),
    "ib": (Of(_IB_PORT), "ib"),
    "kernel_log": (_KERNEL_LOG, "kernel_log"),
    "modules": (list, "modules"),
    "nvswitch_count": (COUNT, "nvswitch"),
    "nvme": (Of(Keys()), "nvme"),
    "versions": (Keys({"ofed": str, "nccl": str, "hca_firmware": Keys()}), "versions"),
    "dcgm": (Keys({"tests": Of(Keys({"result": str}))}), "dcgm"),
}
MALFORMED = "node payload malformed"


def checked_facts(facts: dict[str, Any]) -> tuple[dict[str, Any], list[Result]]:
    """The facts with every fact of the wrong shape dropped (None, and its probe's error set),
    and one `payload.shape` error per such fact. The facts passed in stay as sent."""
    errors = facts.get("probe_errors")
    problems = [] if isinstance(errors, dict | None) else [f"probe_errors{_wrong(errors, 'dict')}"]
    probe_errors: dict[Any, Any] = dict(errors) if isinstance(errors, dict) else {}
    dropped: dict[str, None] = {}
    for name, (shape, probe) in FACTS.items():
        value = facts.get(name)
        problem = None if value is None else _problem(value, shape)
        if problem is not None:
            problems.append(f"{name}{problem}")
            dropped[name] = None
            probe_errors.setdefault(probe, f"{MALFORMED}: {name}{problem}")
    if not problems:
        return facts, []
    results = [Result("payload.shape", "error", f"{MALFORMED}: {p}") for p in problems]
    return {**facts, **dropped, "probe_errors": probe_errors}, results


def _problem(value: Any, shape: Shape) -> str | None:
    """What is wrong with `value`, from where in it: "[3].pcie.replays is str, expected a
    count (0 or more)"; None when it has the shape. The path is built only on a problem."""
    if isinstance(shape, Of):
        if not isinstance(value, list):
            return _wrong(value, "list")
        for n, item in enumerate(value):
            problem = _problem(item, shape.item)
            if problem is not None:
                return f"[{n}]{problem}"
        return None
    if isinstance(shape, Keys):
        return _keys_problem(value, shape)
    if isinstance(shape, Number):
        return _number_problem(value, shape)
    # JSON true is not an int here: an XID number or an index is never a boolean.
    if not isinstance(value, shape) or (isinstance(value, bool) and shape is not bool):
        return _wrong(value, shape.__name__)
    return None


def _keys_problem(value: Any, shape: Keys) -> str | None:
    if not isinstance(value, dict):
        return _wrong(value, "dict")
    for key in shape.required:
        if value.get(key) is None:
            return f" has no {key}"
    for key, inner in shape.fields.items():
        found = value.get(key)
        problem = None if found is None else _problem(found, inner)
        if problem is not None:
            return f".{key}{problem}"
    return None


def _number_problem(value: Any, shape: Number) -> str | None:
    if type(value) not in (int, float):
        return _wrong(value, shape.expected)
    # NaN fails both comparisons; a huge int is compared as an int, never made a float.
    if not shape.minimum <= value <= MAX_MAGNITUDE:
        return f" is {_brief(value)}, expected {shape.expected}"
    return None


def _brief(value: float) -> str:
    text = str(value)
    return text if len(text) <= 24 else f"{text[:20]}… ({len(text)} digits)"


def _wrong(value: Any, expected: str) -> str:
    return f" is {type(value).__name__}, expected {expected}"
