"""A run document as GitHub-flavoured Markdown: the summary tables, for a ticket or a chat.

Sections: the verdict and what ran; the steps of a playbook; the hosts; every host x check as a
row, failures first; the benchmark figures; the results of jobs across nodes. Pure: a document
in, a string out.

Every cell may hold text from a node, so `md_cell` makes it inert in a table: `|` would end the
cell and a newline the row, `<...>` is read as HTML (an observed "<none>" would vanish), a
trailing backslash would escape the next `|`, and control characters are shown as escapes.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from dcctl.evaluate.bench_allreduce import size_text
from dcctl.evaluate.check import summarize_facts
from dcctl.report.document_view import (
    HOST_ORDER,
    STATUS_ORDER,
    as_list,
    as_map,
    escaped_char,
    gpu_index,
    hosts_label,
)

# A cell shows this much of an observed or expected value: a table row is not a data dump.
VALUE_CHARS = 120
# Failures first: a person reading a ticket looks at the top.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
_GEMM = re.compile(r"^bench\.gemm\.([^.]+)$")
_FACT_KEYS = {"os": "os", "kernel": "kernel", "driver": "driver", "cuda": "cuda", "gpus": "gpus"}
_CERTIFY_ID = "certify"
_CLUSTER_ALLREDUCE = ("cluster.allreduce", "cluster.allreduce.pair")


# --- cells and tables --------------------------------------------------------------------


def _inert(value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    # Backslashes doubled first, so the escapes written for control characters stay escapes.
    text = text.replace("\\", "\\\\").replace("&", "&amp;").replace("<", "&lt;")
    return _CONTROL.sub(escaped_char, text)


def md_text(value: Any) -> str:
    """Text from a node made inert for Markdown outside tables (line breaks kept as spaces)."""
    return re.sub(r"\r\n|\r|\n", " ", _inert(value))


def md_cell(value: Any) -> str:
    """One table cell: `|` escaped, line breaks as <br>, empty as "-"."""
    if value is None or value == "":
        return "-"
    return re.sub(r"\r\n|\r|\n", "<br>", _inert(value).replace("|", "\\|"))


def md_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub table; every cell goes through md_cell."""
    lines = [
        "| " + " | ".join(md_cell(column) for column in columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    lines += ["| " + " | ".join(md_cell(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def figure(value: Any, digits: int = 1) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return "-"
    return f"{value:,.{digits}f}"


def percent(fraction: Any) -> str:
    """0.789 -> "78.9 %"."""
    return "-" if figure(fraction) == "-" else f"{100 * fraction:.1f} %"


def value_text(value: Any) -> str:
    """An observed or expected value, compact and cut to VALUE_CHARS."""
    if value is None:
        return "-"
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= VALUE_CHARS else f"{text[: VALUE_CHARS - 1]}…"


# --- the document ------------------------------------------------------------------------


def render_markdown(document: Mapping[str, Any]) -> str:
    """The run as Markdown, ending with a newline."""
    hosts = sorted(
        (h for h in as_list(document.get("hosts")) if isinstance(h, Mapping)),
        key=lambda h: HOST_ORDER.get(str(h.get("status")), 3),
    )
    cluster = [r for r in as_list(document.get("cluster_results")) if isinstance(r, Mapping)]
    default_step = str(document.get("command") or "run")
    sections = [_head(document)]
    steps = [s for s in as_list(document.get("steps")) if isinstance(s, Mapping)]
    if len(steps) > 1:
        sections.append("## Steps\n\n" + _steps_table(steps))
    if hosts:
        sections.append("## Hosts\n\n" + _hosts_table(hosts))
        sections.append(
            "## Results\n\nEvery check of every host, failures first.\n\n"
            + _results_table(hosts, default_step)
        )
    sections += _bench_sections(hosts, cluster)
    if cluster:
        sections.append("## Cluster results\n\n" + _cluster_table(cluster, default_step))
    return "\n\n".join(sections) + "\n"


def _head(document: Mapping[str, Any]) -> str:
    status = str(document.get("status", "unknown"))
    lines = [f"# dcctl {md_text(document.get('command', '?'))}: {status.upper()}", ""]
    facts = [
        ("Run", document.get("run_id")),
        ("Playbook", document.get("playbook")),
        ("Inventory", document.get("inventory")),
        ("dcctl", document.get("dcctl_version")),
        ("Started", document.get("started_at")),
        ("Finished", document.get("finished_at")),
    ]
    lines += [f"- **{label}:** {md_text(value)}" for label, value in facts if value is not None]
    summary = document.get("summary")
    if isinstance(summary, Mapping):
        lines.append(
            f"- **Hosts:** {summary.get('hosts', 0)}: {summary.get('passed', 0)} passed, "
            f"{summary.get('failed', 0)} failed, {summary.get('error', 0)} error; "
            f"{summary.get('warnings', 0)} warning(s)"
        )
    return "\n".join(lines)


def _steps_table(steps: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for step in steps:
        summary = as_map(step.get("summary"))
        counts = (summary.get(key, 0) for key in ("hosts", "passed", "failed", "error"))
        rows.append([step.get("name"), step.get("command"), step.get("status"), *counts])
    return md_table(["Step", "Command", "Status", "Hosts", "Passed", "Failed", "Error"], rows)


def _hosts_table(hosts: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for host in hosts:
        facts = as_map(host.get("facts"))
        # A fact the run did not read is "-": a bench run reads GPUs, not the OS.
        summary = summarize_facts(dict(facts)) if facts else {}
        shown = [
            summary.get(key, "-") if fact in facts else "-" for key, fact in _FACT_KEYS.items()
        ]
        error = host.get("error")
        problem = (
            f"{error.get('kind')}: {error.get('message')}" if isinstance(error, Mapping) else ""
        )
        rows.append([host.get("name"), host.get("status"), *shown, _counts(host), problem])
    columns = ["Host", "Status", "OS", "Kernel", "Driver", "CUDA", "GPUs", "Findings", "Error"]
    return md_table(columns, rows)


def _counts(host: Mapping[str, Any]) -> str:
    counts = Counter(
        str(r.get("status")) for r in as_list(host.get("results")) if isinstance(r, Mapping)
    )
    shown = [f"{counts[s]} {s}" for s in ("fail", "error", "warn") if counts[s]]
    return ", ".join(shown) if shown else "none"


def _results_table(hosts: Sequence[Mapping[str, Any]], default_step: str) -> str:
    rows: list[tuple[int, list[Any]]] = []
    for host in hosts:
        error = host.get("error")
        if isinstance(error, Mapping):
            message = f"{error.get('kind')}: {error.get('message')}"
            rows.append((1, [host.get("name"), "-", "host", "-", "error", "-", "-", message]))
        for result in as_list(host.get("results")):
            if not isinstance(result, Mapping):
                continue
            status = str(result.get("status"))
            rows.append((STATUS_ORDER.get(status, 1), [
                host.get("name"), result.get("step") or default_step, result.get("id"),
                gpu_index(result), status, value_text(result.get("observed")),
                value_text(result.get("expected")), result.get("message"),
            ]))  # fmt: skip
    rows.sort(key=lambda row: row[0])  # stable: hosts and checks keep their order
    columns = ["Host", "Step", "Check", "GPU", "Status", "Observed", "Expected", "Message"]
    return md_table(columns, [cells for _, cells in rows])


def _cluster_table(results: Sequence[Mapping[str, Any]], default_step: str) -> str:
    ordered = sorted(results, key=lambda r: STATUS_ORDER.get(str(r.get("status")), 1))
    rows = [
        [r.get("step") or default_step, r.get("id"), hosts_label(r.get("hosts")), r.get("status"),
         r.get("message")]
        for r in ordered
    ]  # fmt: skip
    return md_table(["Step", "Check", "Hosts", "Status", "Message"], rows)


# --- benchmark figures -------------------------------------------------------------------


def _bench_sections(
    hosts: Sequence[Mapping[str, Any]], cluster: Sequence[Mapping[str, Any]]
) -> list[str]:
    """The figures of each benchmark that ran, from the results' metrics (what history keeps)."""
    pairs = [
        (host, r) for host in hosts for r in as_list(host.get("results")) if isinstance(r, Mapping)
    ]
    sections = []
    gemm = [_gemm_row(host, r) for host, r in pairs if _GEMM.match(str(r.get("id")))]
    gemm_rows = [row for row in gemm if row is not None]
    if gemm_rows:
        columns = ["Host", "Step", "Dtype", "TFLOP/s (median per GPU)", "Efficiency", "Status"]
        sections.append("## GEMM\n\n" + md_table(columns, _worst_first(gemm_rows)))
    allreduce = [
        _allreduce_row(str(h.get("name")), r) for h, r in pairs if r.get("id") == "bench.allreduce"
    ]
    allreduce += [
        _allreduce_row(_cluster_label(r), r) for r in cluster if r.get("id") in _CLUSTER_ALLREDUCE
    ]
    allreduce_rows = [row for row in allreduce if row is not None]
    if allreduce_rows:
        columns = ["Where", "Step", "Ranks", "Size", "algbw (GB/s)", "busbw (GB/s)", "Status"]
        title = "## Allreduce\n\nAt the largest message size; GB/s = 1e9 B/s.\n\n"
        sections.append(title + md_table(columns, _worst_first(allreduce_rows)))
    fio = [_fio_row(host, r) for host, r in pairs if str(r.get("id")).startswith("bench.fio.")]
    fio_rows = [row for row in fio if row is not None]
    if fio_rows:
        columns = ["Host", "Step", "Job", "MB/s", "IOPS", "p99 latency (µs)", "Status"]
        sections.append("## fio\n\nMB/s = 1e6 B/s.\n\n" + md_table(columns, _worst_first(fio_rows)))
    certify = [_certify_row(r) for r in cluster if r.get("id") == _CERTIFY_ID]
    if certify:
        columns = ["Hosts", "Verdict", "Ranks", "samples/s", "MFU", "Message", "Status"]
        sections.append("## Certify\n\n" + md_table(columns, _worst_first(certify)))
    return sections


def _worst_first(rows: list[list[Any]]) -> list[list[Any]]:
    """Rows whose last cell is the status, worst first."""
    return sorted(rows, key=lambda row: STATUS_ORDER.get(str(row[-1]), 1))


def _metrics(result: Mapping[str, Any]) -> Mapping[str, Any]:
    return as_map(result.get("metrics"))


def _gemm_row(host: Mapping[str, Any], result: Mapping[str, Any]) -> list[Any] | None:
    metrics = _metrics(result)
    if figure(metrics.get("tflops")) == "-":
        return None  # checksum, soak, a skipped dtype: no figure
    dtype = _GEMM.sub(r"\1", str(result.get("id")))
    return [host.get("name"), result.get("step"), dtype, figure(metrics.get("tflops"), 2),
            percent(metrics.get("efficiency")),
            result.get("status")]  # fmt: skip


def _allreduce_row(where: str, result: Mapping[str, Any]) -> list[Any] | None:
    metrics = _metrics(result)
    if not metrics:
        return None
    ranks = metrics.get("ranks")
    nodes = metrics.get("nodes")
    shown = "-" if ranks is None else f"{ranks} on {nodes} nodes" if nodes else str(ranks)
    return [where, result.get("step"), shown, size_text(metrics.get("bytes")),
            figure(metrics.get("algbw_gbs"), 2), figure(metrics.get("busbw_gbs"), 2),
            result.get("status")]  # fmt: skip


def _cluster_label(result: Mapping[str, Any]) -> str:
    if result.get("id") == "cluster.allreduce.pair":
        return " + ".join(str(h) for h in as_list(result.get("hosts"))) or "-"
    return f"cluster: {hosts_label(result.get('hosts'))}"


def _fio_row(host: Mapping[str, Any], result: Mapping[str, Any]) -> list[Any] | None:
    metrics = _metrics(result)
    if figure(metrics.get("mb_s")) == "-":
        return None
    clat = as_map(metrics.get("clat_us"))
    job = str(result.get("id"))[len("bench.fio.") :]
    return [host.get("name"), result.get("step"), job, figure(metrics.get("mb_s")),
            figure(metrics.get("iops"), 0), figure(clat.get("p99"), 0),
            result.get("status")]  # fmt: skip


def _certify_row(result: Mapping[str, Any]) -> list[Any]:
    metrics = _metrics(result)
    certificate = as_map(result.get("certificate"))
    verdict = certificate.get("verdict", result.get("observed"))
    reasons = [str(reason) for reason in as_list(certificate.get("reasons"))]
    message = "; ".join(reasons) if reasons else result.get("message")
    return [hosts_label(result.get("hosts")), verdict, metrics.get("ranks"),
            figure(metrics.get("samples_per_s"), 0),
            percent(metrics.get("mfu")), message,
            result.get("status")]  # fmt: skip
