"""Console tables of a `bench` run: one per benchmark, a row per host and figure, worst first.

The figures come from each host's payload sections (what the node measured), the status from
its judged results, so a row shows both what was measured and what was decided about it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.table import Table
from rich.text import Text

from dcctl.report.document_view import STATUS_ORDER

STATUS_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red", "error": "bold yellow",
                "skip": "dim"}  # fmt: skip


def figure_text(value: Any, digits: int = 1) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "-"
    return f"{value:,.{digits}f}"


def _status(host: dict[str, Any], result_id: str) -> str:
    for result in host.get("results") or []:
        if result.get("id") == result_id:
            return str(result.get("status"))
    return "-"


def titled_table(
    title: str, columns: Iterable[str], rows: list[tuple[str, list[str]]]
) -> Table | None:
    if not rows:
        return None
    table = Table(title=Text(title), title_justify="left")
    for index, column in enumerate(columns):
        table.add_column(column, no_wrap=index == 0, justify="left" if index < 2 else "right")
    table.add_column("Status", no_wrap=True)
    for status, cells in sorted(rows, key=lambda row: STATUS_ORDER.get(row[0], 5)):
        table.add_row(*cells, Text(status, style=STATUS_STYLE.get(status, "")))
    return table


def _gemm_rows(host: dict[str, Any]) -> list[tuple[str, list[str]]]:
    section = (host.get("facts") or {}).get("gemm") or {}
    rows = []
    for summary in section.get("dtypes") or []:
        gpus = summary.get("gpus") or []
        device = "CPU" if gpus and gpus[0].get("device") == "cpu" else f"{len(gpus)} GPU"
        slowest = summary.get("slowest") or {}
        mismatches = summary.get("checksum_mismatches") or []
        size = f"{summary.get('m')}x{summary.get('n')}x{summary.get('k')}"
        dtype = summary.get("dtype")
        rows.append((_status(host, f"bench.gemm.{dtype}"), [
            host["name"], f"{dtype} {device}", size,
            figure_text(summary.get("median_tflops"), 2),
            figure_text(100 * slowest["vs_median"], 0) + " %" if "vs_median" in slowest else "-",
            "-" if len(gpus) < 2 else f"{len(mismatches)} differ" if mismatches else "agree",
        ]))  # fmt: skip
    return rows


def _allreduce_rows(host: dict[str, Any]) -> list[tuple[str, list[str]]]:
    section = (host.get("facts") or {}).get("allreduce") or {}
    if not section or section.get("skipped"):
        return []
    return [(_status(host, "bench.allreduce"), [
        host["name"], f"{section.get('ranks')} x {section.get('backend') or '-'}",
        size_text(section.get("bytes")), figure_text(section.get("algbw_gbs"), 2),
        figure_text(section.get("busbw_gbs"), 2), str(section.get("wrong_total", "-")),
    ])]  # fmt: skip


def _fio_rows(host: dict[str, Any]) -> list[tuple[str, list[str]]]:
    section = (host.get("facts") or {}).get("fio") or {}
    rows = []
    for job in section.get("jobs") or []:
        clat = job.get("clat_us") or {}
        rows.append((_status(host, f"bench.fio.{job.get('name')}"), [
            host["name"], str(job.get("name")), figure_text(job.get("mb_s"), 1),
            figure_text(job.get("iops"), 0), figure_text(clat.get("p50"), 0),
            figure_text(clat.get("p99"), 0), figure_text(clat.get("p99.9"), 0),
        ]))  # fmt: skip
    return rows


def size_text(nbytes: Any) -> str:
    if not isinstance(nbytes, int):
        return "-"
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if nbytes >= 1 << shift and nbytes % (1 << shift) == 0:
            return f"{nbytes >> shift} {unit}"
    return f"{nbytes} B"


def bench_tables(hosts: list[dict[str, Any]]) -> list[Table]:
    """One table per benchmark that some host ran."""
    tables = [
        titled_table("GEMM (TFLOP/s per device, median)",
               ["Host", "Dtype", "Size", "TFLOP/s", "Slowest", "Checksums"],
               [row for host in hosts for row in _gemm_rows(host)]),
        titled_table("Allreduce, node scope (GB/s = 1e9 B/s, at the largest size)",
               ["Host", "Ranks", "Size", "algbw", "busbw", "#wrong"],
               [row for host in hosts for row in _allreduce_rows(host)]),
        titled_table("fio (MB/s = 1e6 B/s; completion latency in µs)",
               ["Host", "Job", "MB/s", "IOPS", "p50", "p99", "p99.9"],
               [row for host in hosts for row in _fio_rows(host)]),
    ]  # fmt: skip
    return [table for table in tables if table is not None]


def sweep_tables(hosts: list[dict[str, Any]]) -> list[Table]:
    """Under -v: each host's busbw per message size, as nccl-tests prints it."""
    tables = []
    for host in hosts:
        section = (host.get("facts") or {}).get("allreduce") or {}
        sizes = section.get("sizes") or []
        if not sizes:
            continue
        table = Table(title=Text(f"{host['name']}: allreduce sweep"), title_justify="left")
        for column in ("Size", "time (µs)", "algbw (GB/s)", "busbw (GB/s)", "#wrong"):
            table.add_column(column, justify="right")
        for row in sizes:
            table.add_row(size_text(row.get("bytes")), figure_text(row.get("time_us"), 1),
                          figure_text(row.get("algbw_gbs"), 2),
                          figure_text(row.get("busbw_gbs"), 2),
                          str(row.get("wrong", "-")))  # fmt: skip
        tables.append(table)
    return tables
