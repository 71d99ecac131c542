"""What Slurm says about its nodes: `scontrol show node` output (one-line `-o` or the
multi-line default) or `scontrol --json show node`, read into name, state and drain reason.

Pure: no process is started here, so real captured output can be fed to it in tests.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

# Every drain reason dcctl writes starts with this; a reason without it belongs to a person
# (or to Slurm itself) and is never changed or cleared by dcctl.
REASON_PREFIX = "dcctl:"

_STATE = re.compile(r"(?:^|\s)State=(\S*)")
_REASON = re.compile(r"(?:^|\s)Reason=(.*)$", re.MULTILINE)
# scontrol appends who set the reason and when: "Reason=bad fan [root@2024-01-25T15:12:23]".
_REASON_STAMP = re.compile(r"\s*\[[^\[\]\s@]*@\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\]")
# Keys that follow Reason on the same line in some Slurm versions (`-o` output puts the whole
# record on one line), for a reason printed without its stamp.
_AFTER_REASON = re.compile(r"\s+(?:Comment|Extra|ReservationName|InstanceId|InstanceType)=")
# Characters scontrol appends to a state word: * not responding, ~ powered down, # powering up...
_STATE_SYMBOLS = "*~#%$@^!-"


@dataclass(frozen=True)
class SlurmNode:
    name: str
    state: str
    drained: bool
    # The reason without its "[user@time]" stamp; None when the node has none.
    reason: str | None

    @property
    def drained_by_dcctl(self) -> bool:
        return self.drained and is_dcctl_reason(self.reason)


def is_dcctl_reason(reason: str | None) -> bool:
    return reason is not None and reason.startswith(REASON_PREFIX)


def is_drained(state: str) -> bool:
    """DRAIN as a flag (`IDLE+DRAIN`, `DOWN*+DRAIN`) or as the older words DRAINED/DRAINING."""
    words = (word.rstrip(_STATE_SYMBOLS).upper() for word in state.split("+"))
    return any(word.startswith("DRAIN") for word in words)


def parse_nodes(text: str) -> dict[str, SlurmNode]:
    """Nodes by name from `scontrol show node` output, in either text layout or JSON."""
    if text.lstrip().startswith("{"):
        return _parse_json(text)
    nodes = (_parse_record(record) for record in _records(text))
    return {node.name: node for node in nodes if node is not None}


def _records(text: str) -> Iterator[str]:
    """Each node's text: a line starting with NodeName= opens one; the indented lines of the
    multi-line layout continue it. Anything before the first record (a banner) is dropped."""
    current: list[str] = []
    for line in text.splitlines():
        if line.startswith("NodeName="):
            if current:
                yield "\n".join(current)
            current = [line]
        elif current and line.strip():
            current.append(line.strip())
    if current:
        yield "\n".join(current)


def _parse_record(record: str) -> SlurmNode | None:
    name = record[len("NodeName=") :].split(None, 1)
    if not name:
        return None
    state_match = _STATE.search(record)
    # State comes before Reason in every layout, so a reason holding "State=" cannot win.
    state = state_match.group(1) if state_match else ""
    return SlurmNode(name[0], state, is_drained(state), _reason(record))


def _reason(record: str) -> str | None:
    match = _REASON.search(record)
    if match is None:
        return None
    value = match.group(1)
    stamp = _REASON_STAMP.search(value)
    if stamp is not None:
        value = value[: stamp.start()]
    else:
        after = _AFTER_REASON.search(value)
        value = value[: after.start()] if after else value
    value = value.strip()
    return value or None


def _parse_json(text: str) -> dict[str, SlurmNode]:
    """`scontrol --json show node`: Slurm 22.05 gives `state` as a word plus `state_flags`;
    23.02 and later give `state` as a list of words."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        return {}
    entries = document.get("nodes") if isinstance(document, Mapping) else None
    nodes = (_json_node(entry) for entry in entries or [] if isinstance(entry, Mapping))
    return {node.name: node for node in nodes if node is not None}


def _json_node(entry: Mapping[str, Any]) -> SlurmNode | None:
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        return None
    words = _words(entry.get("state")) + _words(entry.get("state_flags"))
    state = "+".join(word.upper() for word in words)
    reason = entry.get("reason")
    reason_text = reason.strip() if isinstance(reason, str) else ""
    return SlurmNode(name, state, is_drained(state), reason_text or None)


def _words(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list):
        return [word for word in value if isinstance(word, str) and word]
    return []
