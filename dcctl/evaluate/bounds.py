"""How much of one node's payload the controller reads and a host's results show, so judging a
host takes milliseconds and its report stays readable, however much the node sent.

Judging runs in the controller's main thread as each host lands, where neither `--timeout`
nor Ctrl-C can cut it short. So:
- every evaluator visits what it judges once (no lookup that scans a list per item);
- lists in the facts are read up to a cap (LIST_CAPS), far above what a node has or the node
  runtime sends; a longer list is a `payload.size` fail, so cutting it never makes a verdict
  milder;
- results: the first MAX_RESULTS_PER_CHECK per check id, then one that counts the rest and
  carries the worst status among them;
- lists inside a message: MAX_LISTED items, then "and N more";
- strings from the node inside a message: MAX_SHOWN_CHARS, and a whole message MAX_MESSAGE_CHARS;
- counts from the node (`node_count`): at least 1 and at most MAX_NODE_COUNT, whatever was sent,
  so no count (0, negative, not a number) can make what it counts vanish.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import replace
from itertools import islice
from typing import Any

from dcctl.evaluate.result import Result, Status
from dcctl.node.probes.kernel_log import (
    MAX_EVENTS_PER_KEY,
    MAX_KEYS_PER_KIND,
    MAX_LEFT_OUT_CODES,
)

# A node has at most a few dozen GPUs, InfiniBand ports or DCGM rows of one test.
MAX_RESULTS_PER_CHECK = 32
# NVLink links per GPU (18 on an H100) still fit in one message.
MAX_LISTED = 20
MAX_SHOWN_CHARS = 200
MAX_MESSAGE_CHARS = 2000
# Far more events than any kernel log holds; a larger count is garbage, shown as this.
MAX_NODE_COUNT = 10**12

# Each kernel-log list holds at most what the node runtime sends of one kind.
MAX_EVENTS_READ = MAX_KEYS_PER_KIND * MAX_EVENTS_PER_KEY
_KINDS = 3
# (path of a list in the facts, the most entries read of it). Nodes have at most 16 GPUs and a
# few dozen HCA ports and NVMe drives; a Kubernetes node may mount thousands of filesystems.
# The first entries are kept, except in KEEP_LAST.
LIST_CAPS: tuple[tuple[tuple[str, ...], int], ...] = (
    (("gpus",), 256),
    (("ib",), 256),
    (("nvme",), 256),
    (("mounts",), 50_000),
    (("kernel_log", "xids"), MAX_EVENTS_READ),
    (("kernel_log", "sxids"), MAX_EVENTS_READ),
    (("kernel_log", "pcie_bandwidth_limited"), MAX_EVENTS_READ),
    (("kernel_log", "omitted"), _KINDS * MAX_KEYS_PER_KIND),
    (("kernel_log", "left_out"), _KINDS * (MAX_LEFT_OUT_CODES + 1)),
    (("dcgm", "tests"), 2_000),
)
# Lists whose later entries shadow earlier ones (a mount over a mount point hides the one
# before it): cut, they keep their last entries, which are the ones judged.
KEEP_LAST: frozenset[tuple[str, ...]] = frozenset({("mounts",)})
# The same for lists inside each GPU (an H100 has 18 NVLinks).
GPU_LIST_CAPS: tuple[tuple[tuple[str, ...], int], ...] = (
    (("nvlink",), 64),
    (("processes",), 1_000),
    (("clock_events",), 64),
)

# Worst first: a folded result takes the first of these that any folded result had.
SEVERITY: tuple[Status, ...] = ("fail", "error", "warn", "skip", "pass")

# What the results of a check id count, for "... and N more <noun>".
_NOUNS = (
    ("kernel.xid", "distinct XID events"),
    ("kernel.sxid", "distinct SXid events"),
    ("kernel.mlx5_pcie", "NICs"),
    ("ib.", "InfiniBand ports"),
    ("gpu.", "GPUs"),
    ("dcgm.", "DCGM results"),
)


def shown(value: Any, limit: int = MAX_SHOWN_CHARS) -> str:
    """A value from the node as it appears in a message: at most `limit` characters."""
    text = str(value)
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def listed(items: Iterable[str], total: int, separator: str = ", ") -> str:
    """The first MAX_LISTED of `total` items joined, then "and N more"; reads only those."""
    text = separator.join(shown(item) for item in islice(items, MAX_LISTED))
    return f"{text} and {total - MAX_LISTED:,} more" if total > MAX_LISTED else text


def node_count(value: Any) -> int:
    """A count the node sent, as 1 to MAX_NODE_COUNT: a count is only sent for something that
    happened, so 0, a negative number, a bool or a non-integer still stand for at least one."""
    if type(value) is not int or value < 1:
        return 1
    return min(value, MAX_NODE_COUNT)


def worst(statuses: Iterable[Status]) -> Status:
    found = set(statuses)
    return next((status for status in SEVERITY if status in found), "pass")


def noun(result_id: str) -> str:
    return next((word for prefix, word in _NOUNS if result_id.startswith(prefix)), "results")


def summary(result_id: str, tally: Counter[Status], expected: Any = None) -> Result:
    """One result standing for `tally` (how many of each status) results not shown."""
    tally = Counter({status: n for status, n in tally.items() if n > 0})
    count = sum(tally.values())
    by_status = ", ".join(f"{tally[s]:,} {s}" for s in SEVERITY if tally[s])
    message = f"… and {count:,} more {noun(result_id)} ({by_status})"
    observed: dict[str, int] = {"more": count, **{s: tally[s] for s in SEVERITY if tally[s]}}
    status = worst(tally)
    return Result(result_id, status, message, observed, expected)


def fold(
    result_id: str,
    results: Sequence[Result],
    left_out: Counter[Status] | None = None,
    expected: Any = None,
) -> list[Result]:
    """The first MAX_RESULTS_PER_CHECK results of one check, then one summary of the rest and
    of `left_out` (results only counted, by status). Untouched when nothing is past the cap.
    A status counts when its count is positive: one status's count never offsets another's."""
    rest = Counter(result.status for result in results[MAX_RESULTS_PER_CHECK:])
    rest.update(left_out or Counter())
    kept = list(results[:MAX_RESULTS_PER_CHECK])
    return (
        [*kept, summary(result_id, rest, expected)] if any(n > 0 for n in rest.values()) else kept
    )


def fold_by_id(results: Sequence[Result]) -> list[Result]:
    """Every check id capped as `fold` does, in place; a check that folded itself (the cap plus
    its summary) is left as it is. Messages are capped too."""
    counts = Counter(result.id for result in results)
    over = {result_id for result_id, count in counts.items() if count > MAX_RESULTS_PER_CHECK + 1}
    seen: Counter[str] = Counter()
    rest: dict[str, Counter[Status]] = {result_id: Counter() for result_id in over}
    # Results, and where each capped id's summary goes (its id, after its last kept result).
    out: list[Result | str] = []
    for result in results:
        seen[result.id] += 1
        if result.id in over and seen[result.id] > MAX_RESULTS_PER_CHECK:
            rest[result.id][result.status] += 1
            continue
        out.append(_short_message(result))
        if result.id in over and seen[result.id] == MAX_RESULTS_PER_CHECK:
            out.append(result.id)
    expected = {result.id: result.expected for result in results if result.id in over}
    return [
        summary(item, rest[item], expected[item]) if isinstance(item, str) else item for item in out
    ]


def _short_message(result: Result) -> Result:
    if len(result.message) <= MAX_MESSAGE_CHARS:
        return result
    head = MAX_MESSAGE_CHARS // 2
    # Start and end: the end of a message usually says what was expected.
    message = f"{result.message[:head]} … {result.message[head + 3 - MAX_MESSAGE_CHARS :]}"
    return replace(result, message=message)


def bound_facts(facts: dict[str, Any]) -> tuple[dict[str, Any], list[Result]]:
    """The facts with every list of LIST_CAPS and GPU_LIST_CAPS cut to its cap, and a
    `payload.size` fail for each list that was longer. The facts passed in stay as sent."""
    cuts: list[Result] = []
    for path, cap in LIST_CAPS:
        facts = _cut(facts, path, cap, ".".join(path), cuts, path in KEEP_LAST)
    gpus = facts.get("gpus")
    if isinstance(gpus, list):
        before = len(cuts)
        bounded = [_bound_gpu(gpu, index, cuts) for index, gpu in enumerate(gpus)]
        if len(cuts) > before:
            facts = {**facts, "gpus": bounded}
    return facts, cuts


def _bound_gpu(gpu: Any, index: int, cuts: list[Result]) -> Any:
    for path, cap in GPU_LIST_CAPS:
        gpu = _cut(gpu, path, cap, f"gpus[{index}].{'.'.join(path)}", cuts)
    return gpu


def _cut(
    node: Any, path: tuple[str, ...], cap: int, name: str, cuts: list[Result], last: bool = False
) -> Any:
    """`node` with the list at `path` cut to its first (or `last`) `cap` entries (the dicts
    on the way copied)."""
    if not path:
        if not isinstance(node, list) or len(node) <= cap:
            return node
        cuts.append(_too_long(name, len(node), cap, last))
        return node[-cap:] if last else node[:cap]
    if not isinstance(node, dict) or not isinstance(node.get(path[0]), (dict, list)):
        return node
    child = _cut(node[path[0]], path[1:], cap, name, cuts, last)
    return node if child is node[path[0]] else {**node, path[0]: child}


def _too_long(name: str, length: int, cap: int, last: bool) -> Result:
    # A fail, not an error: what was not read may hold a failure, and no healthy node sends
    # this much, so the verdict cannot be milder than judging it all would give.
    message = (
        f"the node sent {length:,} entries in {name}, more than dcctl reads ({cap:,}): "
        f"only the {'last' if last else 'first'} {cap:,} were judged"
    )
    return Result("payload.size", "fail", message, length, f"at most {cap:,}")
