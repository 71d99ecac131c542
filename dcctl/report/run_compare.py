"""Two runs side by side (`dcctl report AFTER --against BEFORE`), e.g. before and after a repair:
per host, metric and GPU the change between them; which hosts changed status; which findings
appeared, disappeared or changed.

Matching: a figure or a finding is the same in both runs when host, id and GPU agree, and the
step too where both runs ran a step of that name. A `check` run against a playbook run compares
by id and GPU (their step names differ); a playbook against itself compares step by step.

A change within DEAD_BAND (1 %) is "same": two good runs of one node differ by about that
much. Which way is better comes from dcctl.evaluate.baselines.better; a figure it does not
judge (a message size, a rank count) gets no verdict. Pure: documents in, values out.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from dcctl.evaluate.baselines import Direction, better, change, figure, worse_by
from dcctl.report.document_view import gpu_index
from dcctl.report.markdown import md_table, md_text
from dcctl.results.metrics import result_points

Verdict = Literal["better", "worse", "same"]
DEAD_BAND = 0.01
PROBLEMS = ("fail", "error", "warn")
# Worst first in every list a person reads.
_SEVERITY = {"fail": 0, "error": 1, "warn": 2}
_VERDICT_ORDER = {"worse": 0, "better": 1, "same": 2, None: 3}
CLUSTER_HOST = "cluster"


@dataclass(frozen=True)
class RunHeader:
    run_id: str
    command: str
    playbook: str | None
    started_at: str
    status: str


@dataclass(frozen=True)
class MetricChange:
    host: str
    metric: str  # result id and metric key: bench.gemm.bf16.tflops
    gpu: int | None
    step: str | None  # set only where both runs ran this step
    before: float
    after: float
    change: float | None  # (after - before) / |before|; None when before is 0
    better: Direction | None
    verdict: Verdict | None


@dataclass(frozen=True)
class StatusChange:
    host: str
    before: str
    after: str


@dataclass(frozen=True)
class FindingChange:
    """A check that is a finding (fail, error, warn) in at least one of the two runs."""

    host: str
    step: str | None
    check: str
    gpu: int | None
    before: str | None  # its status in the earlier run; None: not there
    after: str | None
    message: str  # the later run's words where it is a finding there, else the earlier's


@dataclass(frozen=True)
class RunComparison:
    before: RunHeader
    after: RunHeader
    hosts_compared: tuple[str, ...]
    only_before: tuple[str, ...]
    only_after: tuple[str, ...]
    status_changes: tuple[StatusChange, ...]
    metrics: tuple[MetricChange, ...]
    appeared: tuple[FindingChange, ...]
    disappeared: tuple[FindingChange, ...]
    changed: tuple[FindingChange, ...]


# --- comparing ---------------------------------------------------------------------------


def compare_runs(before: Mapping[str, Any], after: Mapping[str, Any]) -> RunComparison:
    """`after` against `before`: the later run is the one judged."""
    common_steps = _step_names(before) & _step_names(after)
    hosts_before, hosts_after = _hosts(before), _hosts(after)
    both = [name for name in hosts_after if name in hosts_before]
    metrics: list[MetricChange] = []
    appeared: list[FindingChange] = []
    disappeared: list[FindingChange] = []
    changed: list[FindingChange] = []
    status_changes = []
    for name in both:
        old, new = hosts_before[name], hosts_after[name]
        if old.get("status") != new.get("status"):
            status_changes.append(
                StatusChange(name, str(old.get("status")), str(new.get("status")))
            )
        old_results, new_results = _results(old), _results(new)
        metrics += _metric_changes(name, old_results, new_results, common_steps)
        found = _finding_changes(name, old_results, new_results, common_steps)
        appeared += found[0]
        disappeared += found[1]
        changed += found[2]
    groups_before, groups_after = _cluster_groups(before), _cluster_groups(after)
    for label, new_group in groups_after.items():
        old_group = groups_before.get(label, [])
        metrics += _metric_changes(label, old_group, new_group, common_steps)
        found = _finding_changes(label, old_group, new_group, common_steps)
        appeared += found[0]
        disappeared += found[1]
        changed += found[2]
    for label, old_group in groups_before.items():
        if label not in groups_after:
            disappeared += _finding_changes(label, old_group, [], common_steps)[1]
    return RunComparison(
        before=_header(before),
        after=_header(after),
        hosts_compared=tuple(both),
        only_before=tuple(name for name in hosts_before if name not in hosts_after),
        only_after=tuple(name for name in hosts_after if name not in hosts_before),
        status_changes=tuple(status_changes),
        metrics=tuple(metrics),
        appeared=tuple(appeared),
        disappeared=tuple(disappeared),
        changed=tuple(changed),
    )


def verdict_of(direction: Direction | None, before: float, after: float) -> Verdict | None:
    """better / worse / same (within DEAD_BAND) in `direction`; None: the metric is not judged."""
    if direction is None:
        return None
    if before == 0:
        relative = 0.0 if after == 0 else (1.0 if after > 0 else -1.0)
    else:
        relative = change(after, before)
    if abs(relative) <= DEAD_BAND:
        return "same"
    return "worse" if worse_by(direction, relative) > 0 else "better"


def _header(document: Mapping[str, Any]) -> RunHeader:
    playbook = document.get("playbook")
    return RunHeader(
        run_id=str(document.get("run_id", "?")),
        command=str(document.get("command", "?")),
        playbook=None if playbook is None else str(playbook),
        started_at=str(document.get("started_at", "?")),
        status=str(document.get("status", "?")),
    )


def _step_names(document: Mapping[str, Any]) -> set[str]:
    steps = document.get("steps")
    names = (
        {s.get("name") for s in steps if isinstance(s, Mapping)}
        if isinstance(steps, list)
        else set()
    )
    return {name for name in names if isinstance(name, str)}


def _hosts(document: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    hosts = document.get("hosts")
    found: dict[str, Mapping[str, Any]] = {}
    for host in hosts if isinstance(hosts, list) else []:
        if isinstance(host, Mapping) and isinstance(host.get("name"), str):
            found.setdefault(host["name"], host)
    return found


def _results(host: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The host's results, and its error as a finding "host" (it became unreachable)."""
    results = host.get("results")
    found: list[Mapping[str, Any]] = [
        result
        for result in (results if isinstance(results, list) else [])
        if isinstance(result, Mapping) and isinstance(result.get("id"), str)
    ]
    error = host.get("error")
    if isinstance(error, Mapping):
        message = f"{error.get('kind')}: {error.get('message')}"
        found.append({"id": "host", "status": "error", "message": message})
    return found


def _cluster_groups(document: Mapping[str, Any]) -> dict[str, list[Mapping[str, Any]]]:
    """Cluster results by the hosts they span, as "cluster [a, b]": a job across nodes is
    compared with the same job on the same nodes."""
    results = document.get("cluster_results")
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for result in results if isinstance(results, list) else []:
        if isinstance(result, Mapping) and isinstance(result.get("id"), str):
            hosts = result.get("hosts")
            names = ", ".join(str(h) for h in hosts) if isinstance(hosts, list) else ""
            groups.setdefault(f"{CLUSTER_HOST} [{names}]", []).append(result)
    return groups


Key = tuple[str | None, str, int | None]


def _key(result: Mapping[str, Any], common_steps: set[str]) -> Key:
    step = result.get("step")
    return (step if step in common_steps else None, str(result["id"]), gpu_index(result))


def _points(
    results: Sequence[Mapping[str, Any]], common_steps: set[str]
) -> dict[tuple[str | None, str, int | None], float]:
    """(step, metric, gpu) -> value; a later result's figure stands for an earlier one."""
    points: dict[tuple[str | None, str, int | None], float] = {}
    for result in results:
        step = _key(result, common_steps)[0]
        for point in result_points(result):
            points[(step, point.name, point.gpu_index)] = point.value
    return points


def _metric_changes(
    host: str,
    old: Sequence[Mapping[str, Any]],
    new: Sequence[Mapping[str, Any]],
    common_steps: set[str],
) -> Iterator[MetricChange]:
    before = _points(old, common_steps)
    for key, value in _points(new, common_steps).items():
        if key not in before:
            continue
        step, name, gpu = key
        direction = better(name)
        relative = change(value, before[key]) if before[key] != 0 else None
        yield MetricChange(
            host, name, gpu, step, before[key], value, relative, direction,
            verdict_of(direction, before[key], value),
        )  # fmt: skip


def _statuses(
    results: Sequence[Mapping[str, Any]], common_steps: set[str]
) -> dict[Key, Mapping[str, Any]]:
    """Per key, the worst result of it (two ranks' errors of one check are one finding)."""
    worst: dict[Key, Mapping[str, Any]] = {}
    for result in results:
        key = _key(result, common_steps)
        held = worst.get(key)
        if held is None or _rank(result) < _rank(held):
            worst[key] = result
    return worst


def _rank(result: Mapping[str, Any]) -> int:
    return _SEVERITY.get(str(result.get("status")), 3)


def _finding_changes(
    host: str,
    old: Sequence[Mapping[str, Any]],
    new: Sequence[Mapping[str, Any]],
    common_steps: set[str],
) -> tuple[list[FindingChange], list[FindingChange], list[FindingChange]]:
    """(appeared, disappeared, changed) for one host."""
    before, after = _statuses(old, common_steps), _statuses(new, common_steps)
    appeared, disappeared, changed = [], [], []
    for key in [*after, *(k for k in before if k not in after)]:
        was, now = before.get(key), after.get(key)
        old_status = None if was is None else str(was.get("status"))
        new_status = None if now is None else str(now.get("status"))
        old_problem, new_problem = old_status in PROBLEMS, new_status in PROBLEMS
        if not (old_problem or new_problem) or old_status == new_status:
            continue
        source = now if new_problem else was
        assert source is not None
        step, check, gpu = key
        found = FindingChange(
            host, step, check, gpu, old_status, new_status, str(source.get("message", ""))
        )
        if old_problem and new_problem:
            changed.append(found)
        elif new_problem:
            appeared.append(found)
        else:
            disappeared.append(found)
    return appeared, disappeared, changed


# --- output ------------------------------------------------------------------------------


def comparison_json(comparison: RunComparison) -> dict[str, Any]:
    """The comparison as JSON-ready data; keys are stable (scripts read them)."""
    verdicts = [m.verdict for m in comparison.metrics]
    return {
        "schema": "dcctl.comparison/1",
        "before": _header_json(comparison.before),
        "after": _header_json(comparison.after),
        "hosts": {
            "compared": list(comparison.hosts_compared),
            "only_before": list(comparison.only_before),
            "only_after": list(comparison.only_after),
        },
        "summary": {
            "worse": verdicts.count("worse"),
            "better": verdicts.count("better"),
            "same": verdicts.count("same"),
            "not_judged": verdicts.count(None),
            "status_changes": len(comparison.status_changes),
            "appeared": len(comparison.appeared),
            "disappeared": len(comparison.disappeared),
            "changed": len(comparison.changed),
        },
        "status_changes": [
            {"host": c.host, "before": c.before, "after": c.after}
            for c in comparison.status_changes
        ],
        "metrics": [
            {
                "host": m.host,
                "metric": m.metric,
                "gpu": m.gpu,
                "step": m.step,
                "before": m.before,
                "after": m.after,
                "change": m.change,
                "better": m.better,
                "verdict": m.verdict,
            }
            for m in comparison.metrics
        ],
        "findings": {
            "appeared": [_finding_json(f) for f in comparison.appeared],
            "disappeared": [_finding_json(f) for f in comparison.disappeared],
            "changed": [_finding_json(f) for f in comparison.changed],
        },
    }


def _header_json(header: RunHeader) -> dict[str, Any]:
    return {"run_id": header.run_id, "command": header.command, "playbook": header.playbook,
            "started_at": header.started_at, "status": header.status}  # fmt: skip


def _finding_json(finding: FindingChange) -> dict[str, Any]:
    return {"host": finding.host, "step": finding.step, "check": finding.check,
            "gpu": finding.gpu, "before": finding.before, "after": finding.after,
            "message": finding.message}  # fmt: skip


def comparison_tables(
    comparison: RunComparison,
) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, columns, rows) of every non-empty table, as plain strings: what the Markdown
    shows, and what a console view can print with dcctl.report.console.print_table."""
    tables: list[tuple[str, list[str], list[list[str]]]] = []
    if comparison.status_changes:
        rows = [[c.host, c.before, c.after] for c in comparison.status_changes]
        tables.append(("Host status changes", ["Host", "Before", "After"], rows))
    only = [[h, "before"] for h in comparison.only_before]
    only += [[h, "after"] for h in comparison.only_after]
    if only:
        tables.append(("Hosts in one run only", ["Host", "Only in"], only))
    for title, findings in (
        ("Findings that appeared", comparison.appeared),
        ("Findings that changed", comparison.changed),
        ("Findings that disappeared", comparison.disappeared),
    ):
        if findings:
            ordered = sorted(findings, key=_finding_order)
            columns = ["Host", "Step", "Check", "GPU", "Before", "After", "Message"]
            tables.append((title, columns, [_finding_row(f) for f in ordered]))
    if comparison.metrics:
        ordered_metrics = sorted(comparison.metrics, key=lambda m: _VERDICT_ORDER[m.verdict])
        columns = ["Host", "Metric", "GPU", "Before", "After", "Change", "Verdict"]
        rows = [_metric_row(m) for m in ordered_metrics]
        tables.append(("Metrics in both runs, worst first", columns, rows))
    return tables


def _finding_order(finding: FindingChange) -> int:
    return min(_SEVERITY.get(finding.after or "", 3), _SEVERITY.get(finding.before or "", 3))


def _finding_row(finding: FindingChange) -> list[str]:
    return [finding.host, finding.step or "-", finding.check, _text(finding.gpu),
            finding.before or "absent", finding.after or "absent", finding.message]  # fmt: skip


def _metric_row(metric: MetricChange) -> list[str]:
    name = f"{metric.step}: {metric.metric}" if metric.step else metric.metric
    shown = "-" if metric.change is None else f"{metric.change * 100:+.1f} %"
    verdict = metric.verdict or "not judged"
    return [metric.host, name, _text(metric.gpu), figure(metric.before), figure(metric.after),
            shown, verdict]  # fmt: skip


def summary_line(comparison: RunComparison) -> str:
    """ "3 worse, 1 better, 40 same; 2 findings appeared, 1 disappeared; 1 host changed status"."""
    verdicts = [m.verdict for m in comparison.metrics]
    parts = [
        f"{verdicts.count('worse')} worse, {verdicts.count('better')} better, "
        f"{verdicts.count('same')} same of {len(verdicts)} figures",
        f"{len(comparison.appeared)} finding(s) appeared, {len(comparison.disappeared)} "
        f"disappeared, {len(comparison.changed)} changed",
        f"{len(comparison.status_changes)} host(s) changed status",
    ]
    return "; ".join(parts)


def comparison_markdown(comparison: RunComparison) -> str:
    """The comparison as GitHub-flavoured Markdown, ending with a newline."""
    after, before = comparison.after, comparison.before
    lines = [
        f"# dcctl comparison: {md_text(after.run_id)} against {md_text(before.run_id)}",
        "",
        f"- **After:** {md_text(after.run_id)} ({md_text(after.command)}, "
        f"{md_text(after.status)}, {md_text(after.started_at)})",
        f"- **Before:** {md_text(before.run_id)} ({md_text(before.command)}, "
        f"{md_text(before.status)}, {md_text(before.started_at)})",
        f"- **Hosts in both:** {len(comparison.hosts_compared)}",
        f"- **Summary:** {md_text(summary_line(comparison))}",
        f"- A change within {DEAD_BAND:.0%} is the same; change = (after - before) / |before|.",
    ]
    sections = ["\n".join(lines)]
    tables = comparison_tables(comparison)
    sections += [f"## {title}\n\n{md_table(columns, rows)}" for title, columns, rows in tables]
    if not tables:
        sections.append("No host, finding or figure to compare.")
    return "\n\n".join(sections) + "\n"


def _text(value: Any) -> str:
    return "-" if value is None else str(value)
