"""Console view of a run's `cluster_results`: the verdicts of jobs that span nodes (certify,
cluster allreduce, allreduce pairs), printed after the hosts table.

Every field but `id` and `status` may be missing: a group that never ran has no figures, and
an older or newer run document may lack or add keys. What is missing shows as "-".
Strings from nodes (host names, reasons) go into rich as Text, never as markup: a "[...]" in a
host name must print as itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeGuard

from rich.console import Console, Group, JustifyMethod, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from dcctl.report.bench_tables import (
    STATUS_STYLE,
    figure_text,
    size_text,
    sweep_tables,
    titled_table,
)
from dcctl.report.document_view import as_list, as_map, hosts_label

CERTIFY_ID = "certify"
ALLREDUCE_ID = "cluster.allreduce"
PAIR_ID = "cluster.allreduce.pair"
PAIRS_ID = "cluster.allreduce.pairs"
# A title names this many hosts, then a count: a 1,000-node group cannot be listed in a title.
TITLE_HOSTS = 4


def print_cluster_results(
    console: Console, cluster_results: list[dict[str, Any]], detail: bool
) -> None:
    """Each cluster result as a panel, line or table; pairs together, by pass."""
    for renderable in cluster_renderables(cluster_results, detail):
        console.print(renderable)


def cluster_renderables(
    cluster_results: list[dict[str, Any]], detail: bool
) -> list[RenderableType]:
    """In the document's order, except that every pair result joins the pairs view, shown
    where the first pair item is: the pairs of a run are read as one sweep."""
    shown: list[RenderableType] = []
    allreduce = [r for r in cluster_results if r.get("id") == ALLREDUCE_ID]
    pairs = [r for r in cluster_results if r.get("id") in (PAIR_ID, PAIRS_ID)]
    for result in cluster_results:
        kind = result.get("id")
        if kind == CERTIFY_ID:
            shown += certify_renderables(result, detail)
        elif kind == ALLREDUCE_ID and result is allreduce[0]:
            shown += allreduce_renderables(allreduce, detail)
        elif kind in (PAIR_ID, PAIRS_ID) and result is pairs[0]:
            shown += pairs_renderables(pairs)
        elif kind not in (ALLREDUCE_ID, PAIR_ID, PAIRS_ID):
            shown.append(_plain_line(result))
    return shown


# --- certify ------------------------------------------------------------------------------


def certify_renderables(result: Mapping[str, Any], detail: bool) -> list[RenderableType]:
    """The verdict panel; with `detail`, the ranks and the versions each host ran."""
    certificate = as_map(result.get("certificate"))
    certified = _certified(result, certificate)
    panel = Panel(
        Group(*_verdict_lines(result, certificate, certified)),
        title=Text(f"certify: {hosts_label(result.get('hosts'), TITLE_HOSTS, '-')}"),
        title_align="left",
        border_style="green" if certified else "red",
        expand=False,
    )
    if not detail:
        return [panel]
    tables = [_ranks_table(certificate.get("ranks")), _versions_table(certificate.get("versions"))]
    return [panel, *(table for table in tables if table is not None)]


def _certified(result: Mapping[str, Any], certificate: Mapping[str, Any]) -> bool:
    # A pass alone is not a certificate: the verdict must say so too, where there is one.
    verdict = certificate.get("verdict", result.get("observed"))
    return result.get("status") == "pass" and verdict in ("certified", None)


def _verdict_lines(
    result: Mapping[str, Any], certificate: Mapping[str, Any], certified: bool
) -> list[Text]:
    metrics = as_map(result.get("metrics"))
    head = Text("CERTIFIED" if certified else "NOT CERTIFIED",
                style="bold green" if certified else "bold red")  # fmt: skip
    lines = [head]
    reasons = [str(reason) for reason in as_list(certificate.get("reasons"))]
    if not certified and not reasons and result.get("message"):
        reasons = [str(result["message"])]  # no certificate at all: the message says why
    lines += [Text(f"  - {reason}", style="red") for reason in reasons]
    lines += _figure_lines(metrics, as_map(certificate.get("thresholds")))
    return lines


def _figure_lines(metrics: Mapping[str, Any], thresholds: Mapping[str, Any]) -> list[Text]:
    if not metrics:
        return []
    target = thresholds.get("loss_target")
    loss = f"loss {_figure(metrics.get('loss_initial'))} -> {_figure(metrics.get('loss_final'))}"
    if _is_number(target):
        loss += f" (target {target:g})"
    lines = [
        f"ranks {_count(metrics.get('ranks'))} on {_count(metrics.get('nodes'))} node(s)",
        f"samples/s {figure_text(metrics.get('samples_per_s'), 0)} job, "
        f"{figure_text(metrics.get('samples_per_s_per_rank'), 0)} per rank",
        f"step p50 {_ms(metrics.get('step_p50_s'))} ms, p99 {_ms(metrics.get('step_p99_s'))} ms",
        loss,
    ]
    mfu = metrics.get("mfu")
    if _is_number(mfu):
        floor = thresholds.get("min_mfu")
        lines.append(f"MFU {mfu:.1%}" + (f" (min {floor:.0%})" if _is_number(floor) else ""))
    return [Text(line) for line in lines]


def _ranks_table(ranks: Any) -> Table | None:
    entries = [as_map(entry) for entry in as_list(ranks)]
    if not entries:
        return None
    table = Table(title=Text("certify: ranks (times in ms)"), title_justify="left")
    for column in ("Rank", "Host", "Local", "GPU", "samples/s", "step p50", "step p99",
                   "local p50", "Straggler", "Checksum"):  # fmt: skip
        table.add_column(column, no_wrap=column == "Host", justify=_justify(column))
    for entry in sorted(entries, key=_rank_order):
        straggler, checksum_ok = entry.get("straggler"), entry.get("checksum_ok")
        table.add_row(
            Text(_count(entry.get("rank"))),
            Text(str(entry.get("host", "-"))),
            Text(_count(entry.get("local_rank"))),
            Text(_gpu(entry.get("gpu"))),
            Text(figure_text(entry.get("samples_per_s"), 0)),
            Text(_ms(entry.get("step_p50_s"))),
            Text(_ms(entry.get("step_p99_s"))),
            Text(_ms(entry.get("local_p50_s"))),
            _flag(straggler is True, "yes", "no" if straggler is False else "-"),
            _flag(checksum_ok is False, "differs", "ok" if checksum_ok is True else "-"),
        )
    return table


def _rank_order(entry: Mapping[str, Any]) -> float:
    rank = entry.get("rank")
    return rank if _is_number(rank) else float("inf")


def _justify(column: str) -> JustifyMethod:
    return "left" if column in ("Host", "GPU", "Straggler", "Checksum") else "right"


def _gpu(gpu: Any) -> str:
    if not isinstance(gpu, Mapping):
        return "-"
    bus = gpu.get("pci_bus_id")
    return f"{_count(gpu.get('index'))}" + (f" ({bus})" if bus else "")


def _flag(bad: bool, bad_text: str, other_text: str) -> Text:
    return Text(bad_text, style="bold red") if bad else Text(other_text)


def _versions_table(versions: Any) -> Table | None:
    hosts = versions if isinstance(versions, Mapping) else {}
    if not hosts:
        return None
    columns = ("torch", "nccl", "cuda", "driver")
    table = Table(title=Text("certify: versions per host"), title_justify="left")
    table.add_column("Host", no_wrap=True)
    for column in columns:
        table.add_column(column)
    for host, found in hosts.items():
        entry = as_map(found)
        table.add_row(Text(str(host)), *(Text(_text(entry.get(key))) for key in columns))
    return table


# --- cluster allreduce --------------------------------------------------------------------


def allreduce_renderables(results: list[dict[str, Any]], detail: bool) -> list[RenderableType]:
    """One row per group, as the node-scope table shows a host; with `detail`, each group's
    sweep, in the node-scope sweep's own table."""
    rows = [(str(r.get("status")), _allreduce_cells(r)) for r in results]
    table = titled_table("Allreduce, cluster scope (GB/s = 1e9 B/s, at the largest size)",
                   ["Hosts", "Ranks", "Size", "algbw", "busbw", "#wrong"], rows)  # fmt: skip
    shown: list[RenderableType] = [] if table is None else [table]
    shown += [_plain_line(r) for r in results if r.get("status") != "pass"]
    if detail:
        # The node-scope sweep table reads a host's facts: the group stands in for the host.
        stand_ins = [{"name": f"cluster {hosts_label(r.get('hosts'), TITLE_HOSTS, '-')}",
                      "facts": {"allreduce": {"sizes": as_list(r.get("sizes"))}}}
                     for r in results]  # fmt: skip
        shown += sweep_tables(stand_ins)
    return shown


def _allreduce_cells(result: Mapping[str, Any]) -> list[str]:
    metrics = as_map(result.get("metrics"))
    ranks = f"{_count(metrics.get('ranks'))} on {_count(metrics.get('nodes'))} nodes"
    if metrics.get("net_only") is True:
        ranks += ", net only"  # one rank per node: the figure is the network's alone
    wrong = [row.get("wrong") for row in map(as_map, as_list(result.get("sizes")))]
    counted = [count for count in wrong if _is_number(count)]
    return [
        hosts_label(result.get("hosts"), TITLE_HOSTS, "-"),
        ranks,
        size_text(metrics.get("bytes")),
        figure_text(metrics.get("algbw_gbs"), 2),
        figure_text(metrics.get("busbw_gbs"), 2),
        _count(sum(counted)) if counted else "-",
    ]


# --- allreduce pairs ----------------------------------------------------------------------


def pairs_renderables(results: list[dict[str, Any]]) -> list[RenderableType]:
    """A table per pass (worst pair first), then the summary naming the flagged nodes."""
    pairs = [r for r in results if r.get("id") == PAIR_ID]
    passes = sorted({_pass_number(r) for r in pairs})
    shown: list[RenderableType] = []
    for number in passes:
        rows = [(str(r.get("status")), _pair_cells(r)) for r in pairs if _pass_number(r) == number]
        title = f"Allreduce pairs, pass {number} (GB/s = 1e9 B/s)"
        table = titled_table(title, ["Hosts", "Size", "Ranks", "algbw", "busbw"], rows)
        if table is not None:
            shown.append(table)
    shown += [_pairs_summary(r) for r in results if r.get("id") == PAIRS_ID]
    return shown


def _pass_number(result: Mapping[str, Any]) -> int:
    number = result.get("pass")
    return int(number) if _is_number(number) else 0


def _pair_cells(result: Mapping[str, Any]) -> list[str]:
    metrics = as_map(result.get("metrics"))
    return [
        " + ".join(str(host) for host in as_list(result.get("hosts"))) or "-",
        size_text(metrics.get("bytes")),
        _count(metrics.get("ranks")),
        figure_text(metrics.get("algbw_gbs"), 2),
        figure_text(metrics.get("busbw_gbs"), 2),
    ]


def _pairs_summary(result: Mapping[str, Any]) -> Text:
    status = str(result.get("status"))
    line = Text("allreduce pairs: ")
    line.append(status, style=STATUS_STYLE.get(status, ""))
    if result.get("message"):
        line.append(f"  {result['message']}")
    flagged = [str(host) for host in as_list(result.get("flagged"))]
    if flagged:
        line.append(f"  flagged: {', '.join(flagged)}", style="bold red")
    threshold = result.get("threshold_gbs")
    if _is_number(threshold):
        source = result.get("threshold_from")
        line.append(f"  (threshold {threshold:.2f} GB/s" + (f", from {source})" if source else ")"),
                    style="dim")  # fmt: skip
    return line


# --- shared -------------------------------------------------------------------------------


def _plain_line(result: Mapping[str, Any]) -> Text:
    """A result this view has no layout for, or a verdict beside its table: id, status, message."""
    status = str(result.get("status"))
    line = Text(f"{result.get('id')}: ")
    line.append(status, style=STATUS_STYLE.get(status, ""))
    if result.get("message"):
        line.append(f"  {result['message']}")
    return line


def _is_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else "-"


def _figure(value: Any) -> str:
    return f"{value:.4g}" if _is_number(value) else "-"


def _ms(seconds: Any) -> str:
    return figure_text(seconds * 1000, 2) if _is_number(seconds) else "-"


def _text(value: Any) -> str:
    return "-" if value is None else str(value)
