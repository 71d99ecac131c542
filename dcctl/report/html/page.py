"""A run document as one self-contained HTML page: the acceptance report people sign.

One file, nothing fetched: styles inline, plots inline SVG, no script at all, and a
Content-Security-Policy that forbids the page any request, so it opens the same from a USB
stick on an air-gapped floor and nothing in it can call out. Dark text on white; status is
told by a symbol as well as a colour, so a black-and-white print loses nothing.

Every string from the run (host names, messages, file contents) is escaped: a node's output
is data, never markup.
"""

from __future__ import annotations

import hashlib
import html
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from dcctl.evaluate.bench_allreduce import size_text
from dcctl.report.document_view import STATUS_ORDER, as_list, as_map, hosts_label
from dcctl.report.html import plots, series
from dcctl.report.html.style import STYLE
from dcctl.report.markdown import value_text

SYMBOLS = {"fail": "✗", "error": "E", "warn": "!", "skip": "\u2013", "pass": "✓"}  # – en dash
# A used file (inventory, playbook) is shown up to this size: a report is not an archive.
SOURCE_CHARS = 200_000
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def esc(value: Any) -> str:
    return html.escape(value if isinstance(value, str) else str(value), quote=True)


def render_html(document: Mapping[str, Any], sources: Mapping[str, str] | None = None) -> str:
    """The whole page. `sources`: the inventory's and playbook's text as the run kept them
    (dcctl.results.sources.read_sources), by run document key; the page reads no file."""
    default_step = str(document.get("command") or "run")
    title = (
        f"dcctl {document.get('command', '?')} {document.get('run_id', '')}: "
        + str(document.get("status", "unknown")).upper()
    )
    body = [
        _header(document),
        _verdict(document),
        _findings(series.findings(document, default_step)),
        _matrix(series.matrix(document)),
        _gemm(series.gemm_grids(document)),
        _allreduce(series.allreduce_curves(document)),
        _fio(series.fio_bars(document)),
        _certify(series.certify_runs(document)),
        _soak(series.soak_series(document)),
        _facts(series.host_facts(document)),
        _fleet(series.fleet_comparisons(document)),
        _sources(document, sources or {}),
        _footer(document),
    ]
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head>\n"
        "<body>\n" + "\n".join(part for part in body if part) + "\n</body></html>\n"
    )


# --- building blocks ------------------------------------------------------------------------


def _table(columns: Sequence[str], rows: Iterable[Sequence[Any]], css: str = "") -> str:
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(_td(cell) for cell in row) + "</tr>" for row in rows)
    return f'<table class="data {css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _td(cell: Any) -> str:
    if isinstance(cell, _Status):
        symbol = SYMBOLS.get(cell.status, "?")
        return f'<td class="s-{esc(cell.status)}">{symbol} {esc(cell.text)}</td>'
    return f"<td>{esc('-' if cell is None or cell == '' else cell)}</td>"


class _Status:
    """A table cell that shows a status with its symbol and colour."""

    def __init__(self, status: str, text: str | None = None) -> None:
        self.status = status if status in SYMBOLS else "error"
        self.text = text or self.status


def _section(key: str, title: str, content: str, note: str = "") -> str:
    lead = f'<p class="note">{esc(note)}</p>' if note else ""
    return f'<section id="{key}"><h2>{esc(title)}</h2>{lead}{content}</section>'


def _plot(key: str, caption: str, draw: Any, *args: Any) -> str:
    svg = plots.render(key, draw, *args)
    return (
        f'<figure class="plot" data-plot="{esc(key)}">{svg}'
        f"<figcaption>{esc(caption)}</figcaption></figure>"
    )


def _figure(value: Any, digits: int = 1) -> str:
    found = series.number(value)
    return "-" if found is None else f"{found:,.{digits}f}"


# --- head, verdict, findings ----------------------------------------------------------------


def _header(document: Mapping[str, Any]) -> str:
    status = str(document.get("status", "unknown"))
    facts = [
        ("Run", document.get("run_id")),
        ("Command", document.get("command")),
        ("Started", document.get("started_at")),
        ("Finished", document.get("finished_at")),
        ("Inventory", document.get("inventory") or "built-in (localhost)"),
        ("Playbook", document.get("playbook")),
        ("dcctl", document.get("dcctl_version")),
    ]
    items = "".join(
        f"<dt>{esc(label)}</dt><dd>{esc(value)}</dd>" for label, value in facts if value
    )
    return (
        f"<header><h1>dcctl {esc(document.get('command', '?'))} report: "
        f'<span class="verdict-word s-text-{esc(_status_key(status))}">{esc(status.upper())}</span>'
        f'</h1><dl class="run">{items}</dl></header>'
    )


def _status_key(host_status: str) -> str:
    return {"passed": "pass", "failed": "fail", "error": "error"}.get(host_status, "error")


def _verdict(document: Mapping[str, Any]) -> str:
    summary = as_map(document.get("summary"))
    counts = [
        ("hosts", summary.get("hosts", 0), ""),
        ("passed", summary.get("passed", 0), "pass"),
        ("failed", summary.get("failed", 0), "fail"),
        ("error", summary.get("error", 0), "error"),
        ("warnings", summary.get("warnings", 0), "warn"),
    ]
    boxes = "".join(
        f'<div class="count {f"s-{key}" if key else ""}" data-count="{esc(label)}">'
        f'<span class="n">{esc(value)}</span><span class="label">{esc(label)}</span></div>'
        for label, value, key in counts
    )
    parts = [f'<div class="counts">{boxes}</div>']
    steps = [s for s in as_list(document.get("steps")) if isinstance(s, Mapping)]
    if len(steps) > 1:
        rows = []
        for step in steps:
            done = as_map(step.get("summary"))
            rows.append(
                [
                    step.get("name"),
                    step.get("command"),
                    _Status(_step_status(step), str(step.get("status"))),
                    done.get("hosts"),
                    done.get("passed"),
                    done.get("failed"),
                    done.get("error"),
                    step.get("on_fail"),
                ]
            )
        columns = ["Step", "Command", "Status", "Hosts", "Passed", "Failed", "Error", "On fail"]
        parts.append("<h3>Steps</h3>" + _table(columns, rows))
    cluster = series.cluster_results(document)
    if cluster:
        ordered = sorted(cluster, key=lambda r: STATUS_ORDER.get(str(r.get("status")), 1))
        rows = [
            [
                r.get("id"),
                hosts_label(r.get("hosts")),
                _Status(str(r.get("status"))),
                r.get("message"),
            ]
            for r in ordered
        ]
        parts.append(
            "<h3>Across nodes</h3>" + _table(["Check", "Hosts", "Status", "Message"], rows)
        )
    return _section("verdict", "Verdict", "".join(parts))


def _step_status(step: Mapping[str, Any]) -> str:
    # An interrupted step ran part of the way: a warning's mark, named as what it is.
    statuses = {"passed": "pass", "failed": "fail", "skipped": "skip", "interrupted": "warn"}
    return statuses.get(str(step.get("status")), "error")


def _findings(found: list[series.Finding]) -> str:
    if not found:
        return _section("findings", "Failures and warnings", '<p class="none">None.</p>')
    rows = [[f.host, f.step, f.check, _Status(f.status), f.message] for f in found]
    table = _table(["Host", "Step", "Check", "Status", "Finding"], rows, "findings")
    return _section("findings", "Failures and warnings", table, "Worst first.")


# --- matrix ---------------------------------------------------------------------------------


def _matrix(grid: series.Matrix) -> str:
    if not grid.rows:
        return ""
    head = "".join(
        f'<th class="check" scope="col"><span>{esc(check)}</span></th>' for check in grid.checks
    )
    rows = []
    for row in grid.rows:
        name = f'<th scope="row" class="host">{esc(row.host)}</th>'
        status_class = f"host-{esc(row.status)}"
        if row.error is not None and not row.cells:
            span = max(1, len(grid.checks))
            kind = row.error.split(":", 1)[0]
            rows.append(
                f'<tr class="{status_class} host-error {esc(kind)}" data-host="{esc(row.host)}">'
                f'{name}<td class="s-error host-error" colspan="{span}">'
                f"E {esc(row.error)}</td></tr>"
            )
            continue
        cells = []
        for check in grid.checks:
            cell = row.cells.get(check)
            if cell is None:
                cells.append('<td class="absent" title="not run on this host">·</td>')
                continue
            hover = f"{row.host} {check}: {cell.status}\n" + "\n".join(cell.messages)
            cells.append(
                f'<td class="s-{esc(cell.status)}" title="{esc(hover)}" data-check="{esc(check)}">'
                f"{SYMBOLS.get(cell.status, '?')}</td>"
            )
        error = ""
        if row.error is not None:
            error = f' title="{esc(row.error)}"'
        row_open = f'<tr class="{status_class}" data-host="{esc(row.host)}"{error}>'
        rows.append(f"{row_open}{name}{''.join(cells)}</tr>")
    legend = " ".join(f'<span class="s-{s}">{SYMBOLS[s]} {s}</span>' for s in SYMBOLS)
    table = (
        f'<p class="legend">{legend} <span class="absent">· not run</span>'
        " — hover a cell for its findings.</p>"
        f'<div class="matrix-wrap"><table class="matrix"><thead><tr><th class="host">Host</th>'
        f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )
    return _section("matrix", "Hosts × checks", table, "Failing hosts and checks first.")


# --- benchmarks -----------------------------------------------------------------------------


def _gemm(grids: list[series.GemmGrid]) -> str:
    if not grids:
        return ""
    groups: dict[tuple[str, ...], list[series.GemmGrid]] = {}
    for grid in grids:  # dtypes measured on the same hosts share one figure
        groups.setdefault(tuple(grid.hosts), []).append(grid)
    figures = []
    for index, group in enumerate(groups.values()):
        peaks = [
            f"{grid.dtype} {', '.join(f'{p:g}' for p in sorted({p for p in grid.peaks if p}))}"
            for grid in group
            if any(grid.peaks)
        ]
        against = f"dense peaks (TFLOP/s): {'; '.join(peaks)}" if peaks else "no peak known"
        caption = (
            f"{len(group[0].hosts)} host(s) × {max(g.gpus for g in group)} GPU(s); {against}. "
            "A dtype with no known peak (CPUs) is coloured by TFLOP/s."
        )
        figures.append(_plot(f"gemm-{index}", caption, plots.gemm_heatmaps, group))
    return _section("gemm", "GEMM throughput per GPU", "".join(figures))


def _allreduce(curves: series.AllreduceCurves) -> str:
    if not curves:
        return ""
    figures = []
    scopes = [
        ("node", "within each node", curves.node),
        ("cluster", "across the cluster", curves.cluster),
        ("pairs", "between pairs of nodes", curves.pairs),
    ]
    for key, words, found in scopes:
        if found:
            largest = max(curve.sizes[-1] for curve in found)
            caption = f"Allreduce {words}: {len(found)} line(s), up to {size_text(int(largest))}."
            title = f"allreduce busbw {words}"
            threshold = curves.thresholds.get(key)
            figures.append(
                _plot(f"busbw-{key}", caption, plots.busbw_plot, title, found, threshold)
            )
    return _section(
        "allreduce",
        "Allreduce bus bandwidth against message size",
        "".join(figures),
        "busbw as nccl-tests defines it; GB/s = 1e9 B/s.",
    )


def _fio(bars: series.FioBars | None) -> str:
    if bars is None:
        return ""
    caption = f"fio: {len(bars.jobs)} job(s) on {len(bars.hosts)} host(s); failing bars hatched."
    return _section("fio", "Storage (fio)", _plot("fio", caption, plots.fio_plot, bars))


def _certify(runs: list[series.Certify]) -> str:
    if not runs:
        return ""
    parts = []
    for index, run in enumerate(runs):
        metrics = run.metrics
        rows = [
            ["Verdict", run.verdict.upper()],
            ["Ranks / nodes", f"{metrics.get('ranks', '-')} / {metrics.get('nodes', '-')}"],
            ["samples/s", _figure(metrics.get("samples_per_s"), 0)],
            [
                "MFU",
                "-"
                if series.number(metrics.get("mfu")) is None
                else f"{100 * metrics['mfu']:.1f} %",
            ],
            [
                "Step time p50 / p99 (ms)",
                f"{_figure(_ms(metrics.get('step_p50_s')), 2)} / "
                f"{_figure(_ms(metrics.get('step_p99_s')), 2)}",
            ],
            [
                "Loss",
                f"{_figure(metrics.get('loss_initial'), 4)} → "
                f"{_figure(metrics.get('loss_final'), 4)}",
            ],
        ]
        rows += [["Reason", reason] for reason in run.reasons]
        stragglers = [f"rank {r.rank} ({r.host})" for r in run.ranks if r.straggler]
        if stragglers:
            rows.append(["Stragglers", ", ".join(stragglers)])
        parts.append(
            f'<h3><span class="s-text-{esc(run.status)}">{SYMBOLS.get(run.status, "?")}</span> '
            f"{esc(run.label)}</h3>" + _table(["Figure", "Value"], rows, "facts")
        )
        if run.loss_curve:
            parts.append(
                _plot(f"certify-loss-{index}", "Global mean loss per step.", plots.loss_plot, run)
            )
        if run.ranks:
            caption = f"Step time per rank; {len(stragglers)} straggler(s) marked ✗."
            parts.append(_plot(f"certify-steps-{index}", caption, plots.step_time_plot, run))
    return _section("certify", "Certification (DDP training)", "".join(parts))


def _ms(seconds: Any) -> float | None:
    value = series.number(seconds)
    return None if value is None else 1000 * value


def _soak(soak: series.Soak) -> str:
    if not soak:
        return ""
    figures = []
    if soak.throughput:
        caption = f"GEMM throughput per soak window, {len(soak.throughput)} GPU(s)."
        figures.append(
            _plot(
                "soak-throughput",
                caption,
                plots.soak_plot,
                "soak: GEMM throughput over time",
                "TFLOP/s",
                soak.throughput,
                "time into the soak (s)",
            )
        )
    if soak.clocks:
        # NVML is sampled from the moment the GEMM workers start, dtype runs included.
        caption = (
            f"SM clock from NVML once a second, {len(soak.clocks)} GPU(s), from the start of "
            "the GEMM benchmark (the dtype runs, then the soak)."
        )
        figures.append(
            _plot(
                "soak-clocks",
                caption,
                plots.soak_plot,
                "SM clock under GEMM load",
                "MHz",
                soak.clocks,
                "time since the GEMM benchmark began (s)",
            )
        )
    return _section("soak", "Soak", "".join(figures))


# --- facts, fleet, sources --------------------------------------------------------------------


def _facts(rows: list[series.HostFacts]) -> str:
    if not rows:
        return ""
    cells = [
        [
            r.host,
            r.os,
            r.kernel,
            r.driver,
            r.cuda,
            r.gpus,
            " ".join(r.serials) or "-",
            ", ".join(r.vbios) or "-",
        ]
        for r in rows
    ]
    columns = ["Host", "OS", "Kernel", "Driver", "CUDA", "GPUs", "Serials", "VBIOS"]
    return _section("facts", "Hosts", _table(columns, cells, "facts-table"))


def _fleet(rows: list[series.Compared]) -> str:
    if not rows:
        return ""
    problems = [r for r in rows if r.status != "pass"]
    cells = [
        [
            r.host,
            r.check,
            _Status(r.status),
            value_text(r.observed),
            value_text(r.expected),
            r.message,
        ]
        for r in problems
    ]
    passed = len(rows) - len(problems)
    note = f"{passed} comparison(s) passed and are not listed." if passed else ""
    if not cells:
        return _section("fleet", "Drift and regressions", '<p class="none">None.</p>', note)
    columns = ["Host", "Check", "Status", "Observed", "Fleet / baseline", "Finding"]
    return _section("fleet", "Drift and regressions", _table(columns, cells), note)


def _sources(document: Mapping[str, Any], sources: Mapping[str, str]) -> str:
    parts = []
    for label, key in (("Inventory", "inventory"), ("Playbook", "playbook")):
        path = document.get(key)
        if not isinstance(path, str) or not path or path.startswith("<"):
            continue  # none, or the built-in default ("<built-in: localhost>")
        text = sources.get(key)
        if text is None:
            parts.append(
                f'<h3>{esc(label)}: {esc(path)}</h3><p class="none">not kept with this run.</p>'
            )
            continue
        shown = text[:SOURCE_CHARS]
        digest = hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:16]
        note = f"as the run read it; sha256 {digest}…" + (
            f"; the first {SOURCE_CHARS:,} characters" if len(text) > SOURCE_CHARS else ""
        )
        parts.append(
            f'<h3>{esc(label)}: {esc(path)}</h3><p class="note">{esc(note)}</p>'
            f'<pre class="source">{esc(shown)}</pre>'
        )
    if not parts:
        return ""
    return _section("sources", "Inventory and playbook", "".join(parts))


def _footer(document: Mapping[str, Any]) -> str:
    rendered = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        f"<footer>dcctl {esc(document.get('dcctl_version', '?'))} · run "
        f'<span class="run-id">{esc(document.get("run_id", "?"))}</span> · rendered {rendered}'
        "</footer>"
    )
