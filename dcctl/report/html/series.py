"""What the HTML report plots and tabulates, read out of a run document: pure data, no markup.

Every reader takes the document as written to disk (hosts' facts and results, cluster
results) and tolerates a section that is absent or malformed: a run that never reached a
benchmark has no figure for it, and a report of a half-written run must still render.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dcctl.report.document_view import HOST_ORDER, STATUS_ORDER, as_list, as_map, hosts_label

GEMM_PREFIX = "bench.gemm."
FIO_PREFIX = "bench.fio."
# Result ids compared with the history or the rest of the fleet (the drift table).
FLEET_PREFIXES = ("drift.", "fleet.outlier.", "baseline.")


def number(value: Any) -> float | None:
    """A finite int or float, else None (JSON from a node may hold anything)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def hosts_of(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The document's hosts, failed first, then error, then passed; names in order within."""
    hosts = [h for h in as_list(document.get("hosts")) if isinstance(h, Mapping)]
    return sorted(
        hosts, key=lambda h: (HOST_ORDER.get(str(h.get("status")), 1), str(h.get("name")))
    )


def results_of(item: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [r for r in as_list(item.get("results")) if isinstance(r, Mapping)]


def cluster_results(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [r for r in as_list(document.get("cluster_results")) if isinstance(r, Mapping)]


def worst(statuses: Sequence[str]) -> str:
    """The status a cell shows when a check has several results on one host (per GPU, port)."""
    return min(statuses, key=lambda s: STATUS_ORDER.get(s, 1)) if statuses else "pass"


# --- host x check matrix --------------------------------------------------------------------


@dataclass
class Cell:
    """One host's results of one check: the worst status, and the findings behind it."""

    status: str
    messages: list[str]


@dataclass
class MatrixRow:
    host: str
    status: str
    error: str | None  # "unreachable: ssh: connect ..." for a host that could not be evaluated
    cells: dict[str, Cell]


@dataclass
class Matrix:
    checks: list[str]  # columns: checks that failed anywhere first
    rows: list[MatrixRow]


def host_error(host: Mapping[str, Any]) -> str | None:
    error = host.get("error")
    if not isinstance(error, Mapping):
        return None
    return f"{error.get('kind', 'error')}: {error.get('message', '')}"


def matrix(document: Mapping[str, Any]) -> Matrix:
    """The host x check matrix; a cell's messages are the non-passing findings when there are
    some (what a person hovering wants), else the results' messages."""
    order: dict[str, int] = {}
    rows = []
    for host in hosts_of(document):
        grouped: dict[str, list[Mapping[str, Any]]] = {}
        for result in results_of(host):
            check = str(result.get("id"))
            order.setdefault(check, len(order))
            grouped.setdefault(check, []).append(result)
        cells = {check: _cell(found) for check, found in grouped.items()}
        rows.append(
            MatrixRow(str(host.get("name")), str(host.get("status")), host_error(host), cells)
        )
    column_worst = {
        check: worst([row.cells[check].status for row in rows if check in row.cells])
        for check in order
    }
    checks = sorted(order, key=lambda c: (STATUS_ORDER.get(column_worst[c], 1), order[c]))
    return Matrix(checks, rows)


def _cell(found: list[Mapping[str, Any]]) -> Cell:
    status = worst([str(r.get("status")) for r in found])
    shown = [r for r in found if r.get("status") != "pass"] or found
    return Cell(status, [str(r.get("message") or r.get("status")) for r in shown])


@dataclass
class Finding:
    host: str
    step: str
    check: str
    status: str
    message: str


def findings(document: Mapping[str, Any], default_step: str) -> list[Finding]:
    """Every fail, error and warning of every host and of the cluster, worst first."""
    found = []
    for host in hosts_of(document):
        name = str(host.get("name"))
        error = host_error(host)
        if error is not None:
            found.append(Finding(name, "-", "host", "error", error))
        for result in results_of(host):
            status = str(result.get("status"))
            if status in ("fail", "error", "warn"):
                step = str(result.get("step") or default_step)
                found.append(
                    Finding(name, step, str(result.get("id")), status, str(result.get("message")))
                )
    for result in cluster_results(document):
        status = str(result.get("status"))
        if status in ("fail", "error", "warn"):
            where = hosts_label(result.get("hosts"))
            step = str(result.get("step") or default_step)
            found.append(
                Finding(where, step, str(result.get("id")), status, str(result.get("message")))
            )
    return sorted(found, key=lambda f: STATUS_ORDER.get(f.status, 1))


# --- GEMM ------------------------------------------------------------------------------------


@dataclass
class GemmGrid:
    """TFLOP/s per host and GPU for one dtype, with each host's peak (None: not known)."""

    dtype: str
    hosts: list[str]
    tflops: list[list[float | None]]  # per host, per GPU index
    peaks: list[float | None]
    statuses: list[str]

    @property
    def gpus(self) -> int:
        return max((len(row) for row in self.tflops), default=0)

    def efficiency(self) -> list[list[float | None]]:
        """TFLOP/s over the host's peak, None where either is unknown."""
        return [
            [None if t is None or not peak else t / peak for t in row]
            for row, peak in zip(self.tflops, self.peaks, strict=True)
        ]


def gemm_grids(document: Mapping[str, Any]) -> list[GemmGrid]:
    """One grid per dtype measured, bf16 (what acceptance is judged on) first."""
    grids: dict[str, GemmGrid] = {}
    for host in sorted(hosts_of(document), key=lambda h: str(h.get("name"))):
        by_dtype = _gemm_by_gpu(as_map(as_map(host.get("facts")).get("gemm")))
        for result in results_of(host):
            check = str(result.get("id"))
            metrics = as_map(result.get("metrics"))
            per_gpu = as_list(metrics.get("tflops_per_gpu"))
            if not check.startswith(GEMM_PREFIX) or not per_gpu:
                continue
            dtype = check[len(GEMM_PREFIX) :]
            grid = grids.setdefault(dtype, GemmGrid(dtype, [], [], [], []))
            grid.hosts.append(str(host.get("name")))
            # By GPU index from the host's facts: the metrics list only the GPUs that gave a
            # figure, so one dead GPU would shift every later one a column left.
            row = by_dtype.get(dtype)
            grid.tflops.append(row if row is not None else [number(v) for v in per_gpu])
            grid.peaks.append(number(metrics.get("peak_tflops")))
            grid.statuses.append(str(result.get("status")))
    return sorted(grids.values(), key=lambda g: (g.dtype != "bf16", g.dtype))


def _index(value: Any) -> int | None:
    found = number(value)
    return int(found) if found is not None and found.is_integer() and 0 <= found < 1024 else None


def _gemm_by_gpu(section: Mapping[str, Any]) -> dict[str, list[float | None]]:
    """dtype -> TFLOP/s at each GPU index (None: no figure), from the GEMM facts section; the
    row spans every device the node ran, so a GPU that gave nothing shows as a gap."""
    devices = [
        i
        for d in as_list(section.get("devices"))
        if (i := _index(as_map(d).get("rank"))) is not None
    ]
    rows: dict[str, list[float | None]] = {}
    for entry in as_list(section.get("dtypes")):
        measured = as_map(entry)
        figures = {}
        for gpu in as_list(measured.get("gpus")):
            index = _index(as_map(gpu).get("rank"))
            if index is not None:
                figures[index] = number(as_map(gpu).get("tflops"))
        width = max([*devices, *figures, -1]) + 1
        if figures:
            rows[str(measured.get("dtype"))] = [figures.get(i) for i in range(width)]
    return rows


# --- allreduce -------------------------------------------------------------------------------


@dataclass
class Curve:
    """busbw against message size for one host, the cluster job, or one pair."""

    label: str
    status: str
    sizes: list[float]  # bytes
    busbw: list[float]  # GB/s (1e9 B/s)


@dataclass
class AllreduceCurves:
    node: list[Curve] = field(default_factory=list)
    cluster: list[Curve] = field(default_factory=list)
    pairs: list[Curve] = field(default_factory=list)
    thresholds: dict[str, float] = field(default_factory=dict)  # scope -> min busbw GB/s

    def __bool__(self) -> bool:
        return bool(self.node or self.cluster or self.pairs)


def _curve(label: str, status: str, sizes: Any) -> Curve | None:
    points = []
    for size in as_list(sizes):
        entry = as_map(size)
        at, busbw = number(entry.get("bytes")), number(entry.get("busbw_gbs"))
        # Sizes a sweep can have: beyond 2^62 bytes is a broken document, not a message.
        if at is not None and 0 < at < 2**62 and busbw is not None:
            points.append((at, busbw))
    if not points:
        return None
    points.sort()
    return Curve(label, status, [p[0] for p in points], [p[1] for p in points])


def _min_busbw(result: Mapping[str, Any]) -> float | None:
    return number(as_map(result.get("expected")).get("min_busbw_gbs"))


def allreduce_curves(document: Mapping[str, Any]) -> AllreduceCurves:
    curves = AllreduceCurves()
    for host in sorted(hosts_of(document), key=lambda h: str(h.get("name"))):
        section = as_map(as_map(host.get("facts")).get("allreduce"))
        status = next(
            (str(r.get("status")) for r in results_of(host) if r.get("id") == "bench.allreduce"),
            "pass",
        )
        curve = _curve(str(host.get("name")), status, section.get("sizes"))
        if curve is not None:
            curves.node.append(curve)
        for result in results_of(host):
            threshold = _min_busbw(result) if result.get("id") == "bench.allreduce" else None
            if threshold is not None:
                curves.thresholds["node"] = max(threshold, curves.thresholds.get("node", 0.0))
    for result in cluster_results(document):
        names = [str(h) for h in as_list(result.get("hosts"))]
        status = str(result.get("status"))
        threshold = _min_busbw(result)
        if result.get("id") == "cluster.allreduce":
            label = f"{len(names)} hosts" if len(names) > 2 else " + ".join(names)
            curve = _curve(label, status, result.get("sizes"))
            if curve is not None:
                curves.cluster.append(curve)
            if threshold is not None:
                curves.thresholds["cluster"] = threshold
        elif result.get("id") == "cluster.allreduce.pair":
            label = " + ".join(names)
            if result.get("pass") == 2:
                label += " (2nd)"
            curve = _curve(label, status, result.get("sizes"))
            if curve is not None:
                curves.pairs.append(curve)
            if threshold is not None:
                curves.thresholds["pairs"] = threshold
    return curves


# --- fio -------------------------------------------------------------------------------------


@dataclass
class FioBars:
    """MB/s per job and host (None: the job did not run there), with each bar's status."""

    jobs: list[str]
    hosts: list[str]
    mb_s: dict[str, list[float | None]]
    statuses: dict[str, list[str]]
    minimums: dict[str, float]  # job -> the MB/s it must reach, where the inventory says


def fio_bars(document: Mapping[str, Any]) -> FioBars | None:
    by_host: dict[str, dict[str, Mapping[str, Any]]] = {}
    jobs: list[str] = []
    for host in sorted(hosts_of(document), key=lambda h: str(h.get("name"))):
        for result in results_of(host):
            check = str(result.get("id"))
            if (
                check.startswith(FIO_PREFIX)
                and number(as_map(result.get("metrics")).get("mb_s")) is not None
            ):
                job = check[len(FIO_PREFIX) :]
                if job not in jobs:
                    jobs.append(job)
                by_host.setdefault(str(host.get("name")), {})[job] = result
    if not by_host:
        return None
    hosts = list(by_host)
    bars = FioBars(jobs, hosts, {}, {}, {})
    for job in jobs:
        found = [by_host[h].get(job) for h in hosts]
        bars.mb_s[job] = [
            None if r is None else number(as_map(r.get("metrics")).get("mb_s")) for r in found
        ]
        bars.statuses[job] = ["skip" if r is None else str(r.get("status")) for r in found]
        for judged in found:
            for key, value in as_map(judged.get("expected") if judged else None).items():
                minimum = number(value)
                if key.startswith("min_") and key.endswith("_mb_s") and minimum is not None:
                    bars.minimums[job] = minimum
    return bars


# --- certify ---------------------------------------------------------------------------------


@dataclass
class RankTime:
    rank: int
    host: str
    p50_s: float  # a whole training step, allreduce included: every rank waits for the slowest
    p99_s: float | None
    local_p50_s: float | None  # the rank's own compute per step, where a straggler shows
    straggler: bool


@dataclass
class Certify:
    label: str
    status: str
    verdict: str
    reasons: list[str]
    loss_curve: list[tuple[float, float]]  # (step, global loss)
    diverged: list[float]  # steps whose loss was not a finite number (NaN, inf: null in JSON)
    loss_target: float | None
    ranks: list[RankTime]
    max_straggler: float | None
    metrics: Mapping[str, Any]


def certify_runs(document: Mapping[str, Any]) -> list[Certify]:
    found = []
    for result in cluster_results(document):
        if result.get("id") != "certify":
            continue
        certificate = as_map(result.get("certificate"))
        thresholds = as_map(certificate.get("thresholds")) or as_map(result.get("expected"))
        curve, diverged = [], []
        for point in as_list(certificate.get("loss_curve")):
            pair = as_list(point)
            step, loss = (number(pair[0]), number(pair[1])) if len(pair) == 2 else (None, None)
            if step is not None and loss is not None:
                curve.append((step, loss))
            elif step is not None:
                diverged.append(step)  # the judge fails a run whose loss is not finite
        ranks = []
        for entry in as_list(certificate.get("ranks")):
            rank = as_map(entry)
            p50 = number(rank.get("step_p50_s"))
            index = number(rank.get("rank"))
            if p50 is not None and index is not None:
                ranks.append(
                    RankTime(
                        int(index),
                        str(rank.get("host")),
                        p50,
                        number(rank.get("step_p99_s")),
                        number(rank.get("local_p50_s")),
                        rank.get("straggler") is True,
                    )
                )
        names = [str(h) for h in as_list(result.get("hosts"))]
        found.append(
            Certify(
                label=", ".join(names) if len(names) <= 4 else f"{len(names)} hosts",
                status=str(result.get("status")),
                verdict=str(
                    certificate.get("verdict") or result.get("observed") or result.get("status")
                ),
                reasons=[str(r) for r in as_list(certificate.get("reasons"))],
                loss_curve=curve,
                diverged=diverged,
                loss_target=number(thresholds.get("loss_target")),
                ranks=sorted(ranks, key=lambda r: r.rank),
                max_straggler=number(thresholds.get("max_straggler")),
                metrics=as_map(result.get("metrics")),
            )
        )
    return found


# --- soak ------------------------------------------------------------------------------------


@dataclass
class Series:
    label: str
    t_s: list[float]
    values: list[float]


@dataclass
class Soak:
    throughput: list[Series]  # TFLOP/s per GPU window
    clocks: list[Series]  # SM MHz per NVML sample

    def __bool__(self) -> bool:
        return bool(self.throughput or self.clocks)


def _points(rows: Any, column: int) -> tuple[list[float], list[float]]:
    t_s, values = [], []
    for row in as_list(rows):
        cells = as_list(row)
        if len(cells) > column:
            t, value = number(cells[0]), number(cells[column])
            if t is not None and value is not None:
                t_s.append(t)
                values.append(value)
    return t_s, values


def soak_series(document: Mapping[str, Any]) -> Soak:
    soak = Soak([], [])
    for host in sorted(hosts_of(document), key=lambda h: str(h.get("name"))):
        name = str(host.get("name"))
        gemm = as_map(as_map(host.get("facts")).get("gemm"))
        for gpu in as_list(as_map(gemm.get("soak")).get("gpus")):
            entry = as_map(gpu)
            t_s, values = _points(entry.get("series"), 1)
            if values:
                soak.throughput.append(Series(f"{name} GPU {entry.get('rank')}", t_s, values))
        samples = as_map(gemm.get("nvml_samples"))
        columns = [str(c) for c in as_list(samples.get("series_columns"))]
        column = columns.index("sm_mhz") if "sm_mhz" in columns else 1
        for gpu in as_list(samples.get("gpus")):
            entry = as_map(gpu)
            t_s, values = _points(entry.get("series"), column)
            if values:
                soak.clocks.append(Series(f"{name} GPU {entry.get('index')}", t_s, values))
    return soak


# --- facts and fleet comparison ----------------------------------------------------------------


@dataclass
class HostFacts:
    host: str
    os: str
    kernel: str
    driver: str
    cuda: str
    gpus: str
    serials: list[str]
    vbios: list[str]


def host_facts(document: Mapping[str, Any]) -> list[HostFacts]:
    """The identity of every host that reported facts (unreachable hosts have none)."""
    from dcctl.evaluate.check import summarize_facts

    rows = []
    for host in sorted(hosts_of(document), key=lambda h: str(h.get("name"))):
        facts = dict(as_map(host.get("facts")))
        if not any(key in facts for key in ("os", "kernel", "driver", "gpus")):
            continue
        try:
            summary = summarize_facts(facts)
        except (AttributeError, TypeError, ValueError):  # a wrongly typed section: no summary
            summary = {}
        # A fact the run did not read shows "-": a bench run reads GPUs, not the OS.
        shown = {
            key: summary.get(key, "-") if key in facts else "-"
            for key in ("os", "kernel", "driver", "cuda", "gpus")
        }
        gpus = [as_map(g) for g in as_list(facts.get("gpus"))]
        serials = [str(g.get("serial")) for g in gpus if g.get("serial")]
        vbios = sorted({str(g.get("vbios")) for g in gpus if g.get("vbios")})
        rows.append(HostFacts(str(host.get("name")), serials=serials, vbios=vbios, **shown))
    return rows


@dataclass
class Compared:
    host: str
    check: str
    status: str
    observed: Any
    expected: Any
    message: str


def fleet_comparisons(document: Mapping[str, Any]) -> list[Compared]:
    """Drift from the fleet's majority, fleet outliers and baseline regressions, worst first."""
    rows = []
    for host in sorted(hosts_of(document), key=lambda h: str(h.get("name"))):
        for result in results_of(host):
            check = str(result.get("id"))
            if check.startswith(FLEET_PREFIXES):
                rows.append(
                    Compared(
                        str(host.get("name")),
                        check,
                        str(result.get("status")),
                        result.get("observed"),
                        result.get("expected"),
                        str(result.get("message")),
                    )
                )
    for result in cluster_results(document):
        check = str(result.get("id"))
        if check.startswith(FLEET_PREFIXES):
            rows.append(
                Compared(
                    "(cluster)",
                    check,
                    str(result.get("status")),
                    result.get("observed"),
                    result.get("expected"),
                    str(result.get("message")),
                )
            )
    return sorted(rows, key=lambda r: STATUS_ORDER.get(r.status, 1))
