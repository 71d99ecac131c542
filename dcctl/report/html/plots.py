"""The report's plots, drawn by matplotlib and returned as inline SVG text.

No pyplot: each plot is its own `Figure` on the SVG canvas, so nothing global is touched and
a report renders the same in any process. Text stays text (`svg.fonttype: none`), which keeps
a 64-host page small and its labels searchable. Each figure's ids are salted with its own name
so that several SVGs inline in one page never share an id.

Made to be read printed in black and white: a sequential colour map whose lightness rises
with the value (viridis), and failing series told apart by line style, marker and width, not
only by colour.
"""

from __future__ import annotations

import io
import math
import re
import statistics
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

from dcctl.evaluate.bench_allreduce import size_text
from dcctl.report.html.series import Certify, Curve, FioBars, GemmGrid, Series

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

WIDTH_IN = 9.0
FAIL_COLOR = "#b2182b"
PASS_COLORS = (
    "#1f4e79",
    "#2ca02c",
    "#6a3d9a",
    "#e08214",
    "#17becf",
    "#7f7f7f",
    "#8c564b",
    "#bcbd22",
)
LINE_STYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "D", "v", "P", "*", "h")
# Above this many series a plot shows the failing ones in colour and the rest thin and grey:
# sixty coloured lines tell nothing apart.
NAMED_SERIES = 10
# Above this many cells a heatmap carries no figures in its cells, only colours.
ANNOTATED_CELLS = 256
# Above this many ranks the step-time plot draws marks, not error bars.
NAMED_RANKS = 64
MAX_HEIGHT_IN = 24.0
_PROLOG = re.compile(r"^.*?(?=<svg)", re.DOTALL)


@contextmanager
def _svg_settings(name: str) -> Iterator[None]:
    import matplotlib
    import matplotlib.style

    settings: dict[str, Any] = {
        # Host names and job names are data: "$" must not start mathtext (which can fail).
        "text.parse_math": False,
        "svg.fonttype": "none",
        "svg.hashsalt": f"dcctl-{name}",
        # A fixed title position: placing it automatically measures every tick label again.
        "axes.titley": 1.0,
        "axes.titlepad": 4.0,
        "font.family": "sans-serif",
        "font.size": 9,
        "axes.grid": True,
        "grid.color": "#d0d0d0",
        "grid.linewidth": 0.5,
        "axes.edgecolor": "#333333",
        "text.color": "#111111",
        "axes.labelcolor": "#111111",
        "xtick.color": "#333333",
        "ytick.color": "#333333",
    }
    # The defaults first: the user's matplotlibrc (usetex, a black face) must not reach the page.
    with matplotlib.style.context("default"), matplotlib.rc_context(cast(Any, settings)):
        yield


def _figure(height_in: float, left_in: float = 0.8, right_in: float = 0.25) -> Figure:
    """A figure with fixed margins: a layout engine measures every label's text several
    times, which for 64 host names costs seconds per plot."""
    from matplotlib.figure import Figure

    height = min(MAX_HEIGHT_IN, height_in)
    figure = Figure(figsize=(WIDTH_IN, height))
    figure.subplots_adjust(
        left=left_in / WIDTH_IN,
        right=1 - right_in / WIDTH_IN,
        top=1 - 0.4 / height,
        bottom=0.55 / height,
        wspace=0.08,
    )
    return figure


def _label_margin(labels: Sequence[str]) -> float:
    """Inches a column of 9-point tick labels takes, with the axis label beside it."""
    return 0.35 + 0.075 * max((len(label) for label in labels), default=4)


def _svg(figure: Figure, name: str) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    return _scoped(_PROLOG.sub("", buffer.getvalue(), count=1).strip(), name)


_ID = re.compile(r'\bid="([^"]+)"')
_REFERENCE = re.compile(r'(url\(#|href="#)([^")]+)')


def _scoped(svg: str, name: str) -> str:
    """Every id in the SVG, and every reference to one, prefixed with the plot's name: the
    element ids matplotlib writes (figure_1, axes_1, ...) repeat in every plot, and ids must
    be unique in the page that holds them all."""
    ids = set(_ID.findall(svg))
    svg = _ID.sub(lambda m: f'id="{name}-{m.group(1)}"', svg)
    return _REFERENCE.sub(
        lambda m: m.group(1) + (f"{name}-{m.group(2)}" if m.group(2) in ids else m.group(2)), svg
    )


def _legend(text: str) -> str:
    """A label from the data as a legend shows it: one starting with "_" would be hidden."""
    return "\u200b" + text if text.startswith("_") else text


def render(name: str, draw: Any, *args: Any) -> str:
    """`draw(*args)` returns a Figure; its SVG, drawn under this module's settings."""
    with _svg_settings(name):
        return _svg(draw(*args), name)


# --- GEMM --------------------------------------------------------------------------------------


def gemm_heatmaps(grids: Sequence[GemmGrid]) -> Figure:
    """One panel per dtype, side by side over the same hosts: host x GPU cells coloured by the
    share of the GPU model's dense peak reached, on one scale; where a dtype has no known peak
    (CPUs, unknown models) its panel is coloured by its own TFLOP/s, with its own scale.

    Laid out by hand in inches, so a one-GPU panel stays narrow and 64 hosts stay readable."""
    import numpy
    from matplotlib.figure import Figure

    hosts = grids[0].hosts
    tables, by_peak = [], []
    for grid in grids:
        efficiency = grid.efficiency()
        peak_known = any(e is not None for row in efficiency for e in row)
        values = efficiency if peak_known else grid.tflops
        table = numpy.full((len(grid.hosts), max(1, grid.gpus)), numpy.nan)
        for row, cells in enumerate(values):
            for column, value in enumerate(cells):
                if value is not None:
                    table[row, column] = 100 * value if peak_known else value
        tables.append(table)
        by_peak.append(peak_known)
    shared = all(by_peak)
    left, top, bottom = _label_margin(hosts) + 0.2, 0.8, 0.5
    panel_w = max(1.0, 0.3 * max(t.shape[1] for t in tables))
    step = panel_w + (0.25 if shared else 1.0)  # a panel's own colour bar sits in its gap
    plot_h = max(0.4, 0.2 * len(hosts))
    width = left + len(grids) * step + (1.0 if shared else 0.0)
    height = min(MAX_HEIGHT_IN, top + plot_h + bottom)
    plot_h = height - top - bottom
    figure = Figure(figsize=(width, height))

    def box(x: float, w: float) -> tuple[float, float, float, float]:
        return (x / width, bottom / height, w / width, plot_h / height)

    joint = _color_range(numpy.concatenate([t.ravel() for t in tables]), True) if shared else None
    image = None
    for index, (grid, table, peak_known) in enumerate(zip(grids, tables, by_peak, strict=True)):
        axes = figure.add_axes(box(left + index * step, panel_w))
        axes.grid(False)
        axes.set_facecolor("#eeeeee")  # a GPU without a figure
        low, high = joint or _color_range(table, peak_known)
        image = axes.imshow(
            numpy.ma.masked_invalid(table),
            aspect="auto",
            cmap="viridis",
            vmin=low,
            vmax=high,
            interpolation="nearest",
        )
        axes.set_xticks(range(table.shape[1]), [str(i) for i in range(table.shape[1])])
        axes.tick_params(axis="x", labeltop=True, top=True, labelsize=7)
        axes.set_xlabel("GPU")
        axes.set_title(grid.dtype if peak_known else f"{grid.dtype} (TFLOP/s)", pad=18)
        if index == 0:
            _host_ticks(axes, grid.hosts, _worst_per_host(grids))
        else:
            axes.set_yticks([])
        if table.size <= ANNOTATED_CELLS:
            _annotate(axes, grid, table, (low + high) / 2)
        if not shared:
            bar = figure.add_axes(box(left + index * step + panel_w + 0.08, 0.12))
            figure.colorbar(image, cax=bar).set_label("TFLOP/s", fontsize=7)
            bar.tick_params(labelsize=7)
    if shared and image is not None:
        bar = figure.add_axes(box(left + len(grids) * step, 0.15))
        figure.colorbar(image, cax=bar, label="% of dense peak")
    figure.suptitle(
        "GEMM TFLOP/s per GPU", x=0.01, y=1 - 0.05 / height, ha="left", va="top", fontsize=10
    )
    return figure


def _worst_per_host(grids: Sequence[GemmGrid]) -> list[str]:
    return [
        "fail"
        if any(g.statuses[i] in ("fail", "error") for g in grids if i < len(g.statuses))
        else "pass"
        for i in range(len(grids[0].hosts))
    ]


def _annotate(axes: Axes, grid: GemmGrid, table: Any, middle: float) -> None:
    """The TFLOP/s figure in each cell, white on the dark end of the scale."""
    for row, cells in enumerate(grid.tflops):
        for column, value in enumerate(cells):
            if value is None:
                continue
            dark = not math.isnan(table[row, column]) and table[row, column] < middle
            axes.text(
                column,
                row,
                _short(value),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if dark else "black",
            )


def _color_range(table: Any, by_peak: bool) -> tuple[float, float]:
    import numpy

    finite = table[numpy.isfinite(table)]  # any shape
    if finite.size == 0:
        return (0.0, 100.0) if by_peak else (0.0, 1.0)
    low, high = float(finite.min()), float(finite.max())
    if by_peak:
        # Whole tens of percent, at least ten apart: 78.9 % and 79.3 % are not far apart.
        low, high = math.floor(low / 10) * 10, max(math.ceil(high / 10) * 10, low + 10)
    elif high - low < 1e-9:
        low, high = low * 0.9, high * 1.1 + 1e-9
    return float(low), float(high)


def _short(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 1 else f"{value:.2f}"


def _host_ticks(axes: Axes, hosts: Sequence[str], statuses: Sequence[str]) -> None:
    every = max(1, math.ceil(len(hosts) / 80))
    shown = range(0, len(hosts), every)
    axes.set_yticks(list(shown), [_host_label(hosts[i], statuses[i]) for i in shown])
    for label, index in zip(axes.get_yticklabels(), shown, strict=True):
        if statuses[index] in ("fail", "error"):
            label.set_color(FAIL_COLOR)
            label.set_fontweight("bold")


def _host_label(host: str, status: str) -> str:
    return f"{host} ✗" if status in ("fail", "error") else host


# --- allreduce ---------------------------------------------------------------------------------


def busbw_plot(title: str, curves: Sequence[Curve], threshold: float | None) -> Figure:
    """busbw (GB/s) against message size on a log2 axis; one line per host, job or pair."""
    figure = _figure(3.8)
    axes = figure.add_subplot()
    axes.set_xscale("log", base=2)
    named = len(curves) <= NAMED_SERIES
    shown = 0
    for index, curve in enumerate(sorted(curves, key=lambda c: c.status in ("fail", "error"))):
        failing = curve.status in ("fail", "error")
        if failing:
            axes.plot(
                curve.sizes,
                curve.busbw,
                color=FAIL_COLOR,
                linestyle="--",
                marker="x",
                linewidth=1.8,
                label=_legend(f"{curve.label} ({curve.status})"),
            )
        elif named:
            axes.plot(
                curve.sizes,
                curve.busbw,
                color=PASS_COLORS[index % len(PASS_COLORS)],
                linestyle=LINE_STYLES[index % len(LINE_STYLES)],
                marker=MARKERS[index % len(MARKERS)],
                markersize=3,
                linewidth=1.2,
                label=_legend(curve.label),
            )
        else:
            label = f"{len(curves)} passing (grey)" if shown == 0 else None
            axes.plot(curve.sizes, curve.busbw, color="#999999", linewidth=0.7, label=label)
            shown += 1
    sizes = sorted({size for curve in curves for size in curve.sizes})
    if threshold is not None and sizes:
        # Drawn at the largest size only: that is the one the judge compares (small messages
        # are latency-bound, and a line across them would make every one look failing).
        largest = sizes[-1]
        axes.plot(
            [largest / 4, largest * 1.4],
            [threshold, threshold],
            color="#111111",
            linestyle=":",
            linewidth=1.6,
            marker="|",
            markersize=8,
            label=f"minimum {threshold:g} GB/s at {size_text(int(largest))}",
        )
    ticks = _size_ticks(sizes)
    axes.set_xticks(ticks, [size_text(int(t)) for t in ticks])
    axes.set_xlabel("message size (bytes, log scale)")
    axes.set_ylabel("busbw (GB/s = 1e9 B/s)")
    axes.set_ylim(bottom=0)
    axes.set_title(title, loc="left")
    axes.legend(fontsize=7, loc="upper left", ncols=2 if len(curves) > 5 else 1)
    return figure


def _size_ticks(sizes: Sequence[float]) -> list[float]:
    if not sizes:
        return []
    low, high = math.floor(math.log2(sizes[0])), math.ceil(math.log2(sizes[-1]))
    step = max(1, math.ceil((high - low) / 10))
    return [float(2**exponent) for exponent in range(low, high + 1, step)]


# --- fio ----------------------------------------------------------------------------------------


def fio_plot(bars: FioBars) -> Figure:
    """Horizontal MB/s bars, one panel per job, hosts down the side; a failing bar is hatched."""
    figure = _figure(1.4 + 0.2 * len(bars.hosts), _label_margin(bars.hosts) + 0.1)
    # Not sharey: shared axes each build every host's tick anyway; only the first has labels.
    panels = figure.subplots(1, len(bars.jobs), squeeze=False)[0]
    positions = list(range(len(bars.hosts)))
    for axes, job in zip(panels, bars.jobs, strict=True):
        # A host that did not run the job has no bar (not a bar of zero).
        ran = [i for i in positions if bars.mb_s[job][i] is not None]
        values = [bars.mb_s[job][i] or 0.0 for i in ran]
        failing = [bars.statuses[job][i] in ("fail", "error") for i in ran]
        drawn = axes.barh(
            ran,
            values,
            color=[FAIL_COLOR if f else "#4a6fa5" for f in failing],
            edgecolor="#222222",
            linewidth=0.4,
        )
        for bar, fails in zip(drawn, failing, strict=True):
            if fails:
                bar.set_hatch("///")
        minimum = bars.minimums.get(job)
        if minimum is not None:
            axes.axvline(minimum, color="#111111", linestyle=":", linewidth=1.2)
        axes.set_title(job + (f" (min {minimum:g})" if minimum is not None else ""), fontsize=9)
        axes.set_xlabel("MB/s")
        axes.set_ylim(len(bars.hosts) - 0.5, -0.5)  # the first host on top, as in the tables
        if axes is not panels[0]:
            axes.set_yticks([])
    worst = [
        "fail" if any(bars.statuses[j][i] in ("fail", "error") for j in bars.jobs) else "pass"
        for i in positions
    ]
    _host_ticks(panels[0], bars.hosts, worst)
    figure.suptitle(
        "fio throughput per host and job (MB/s = 1e6 B/s)",
        x=0.01,
        y=0.995,
        ha="left",
        va="top",
        fontsize=10,
    )
    return figure


# --- certify -------------------------------------------------------------------------------------


def loss_plot(run: Certify) -> Figure:
    figure = _figure(3.2)
    axes = figure.add_subplot()
    steps = [point[0] for point in run.loss_curve]
    axes.plot(
        steps,
        [point[1] for point in run.loss_curve],
        color="#1f4e79",
        linewidth=1.4,
        label="global mean loss",
    )
    if run.loss_target is not None:
        axes.axhline(
            run.loss_target,
            color="#111111",
            linestyle=":",
            linewidth=1.2,
            label=f"target {run.loss_target:g}",
        )
    for index, step in enumerate(run.diverged):
        label = f"loss not finite ({len(run.diverged)} step(s))" if index == 0 else None
        axes.axvline(step, color=FAIL_COLOR, linestyle="--", linewidth=1.0, label=label)
    if run.loss_curve and all(point[1] > 0 for point in run.loss_curve):
        axes.set_yscale("log")
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.set_title(f"certify: loss curve ({run.label})", loc="left")
    axes.legend(fontsize=7)
    return figure


def step_time_plot(run: Certify) -> Figure:
    """Per rank, its own compute per step (local p50: where a straggler shows, and what the
    straggler rule judges) and the whole step (p50, bar to p99: every rank waits in the
    allreduce for the slowest, so these agree). Stragglers: a large cross, named."""
    from matplotlib.ticker import MaxNLocator

    figure = _figure(3.2)
    axes = figure.add_subplot()
    ranks = [r.rank for r in run.ranks]
    step_ms = [1000 * r.p50_s for r in run.ranks]
    upper = [
        max(0.0, 1000 * (r.p99_s if r.p99_s is not None else r.p50_s) - p)
        for r, p in zip(run.ranks, step_ms, strict=True)
    ]
    if len(ranks) <= NAMED_RANKS:
        axes.errorbar(
            ranks,
            step_ms,
            yerr=[[0.0] * len(ranks), upper],
            fmt="s",
            color="#7f7f7f",
            ecolor="#9f9f9f",
            elinewidth=1,
            capsize=2,
            markersize=3,
            label="whole step p50 (bar to p99)",
        )
    else:  # hundreds of bars are a grey smear: the two figures as small marks
        axes.plot(ranks, step_ms, "s", color="#7f7f7f", markersize=1.5, label="whole step p50")
        axes.plot(
            ranks,
            [p + u for p, u in zip(step_ms, upper, strict=True)],
            "_",
            color="#9f9f9f",
            markersize=3,
            label="whole step p99",
        )
    local = [(r.rank, 1000 * r.local_p50_s) for r in run.ranks if r.local_p50_s is not None]
    if local:
        axes.plot(
            [x for x, _ in local],
            [y for _, y in local],
            "o",
            color="#1f4e79",
            markersize=4 if len(local) <= NAMED_RANKS else 2,
            label="compute per step p50 (judged)",
        )
        middle = statistics.median(y for _, y in local)  # as the straggler rule takes it
        axes.axhline(
            middle, color="#111111", linestyle="--", linewidth=0.8, label="median compute p50"
        )
        if run.max_straggler is not None:
            axes.axhline(
                middle * (1 + run.max_straggler),
                color="#111111",
                linestyle=":",
                linewidth=1,
                label=f"median + {100 * run.max_straggler:g} % (or far out by robust z)",
            )
    stragglers = [r for r in run.ranks if r.straggler]
    if stragglers:
        heights = [
            1000 * (r.local_p50_s if r.local_p50_s is not None else r.p50_s) for r in stragglers
        ]
        axes.plot(
            [r.rank for r in stragglers],
            heights,
            "X",
            color=FAIL_COLOR,
            markersize=11,
            label="straggler",
        )
        for rank, height in zip(stragglers, heights, strict=True):
            axes.annotate(
                f"rank {rank.rank} ({rank.host})",
                (rank.rank, height),
                textcoords="offset points",
                xytext=(6, 6),
                fontsize=7,
                color=FAIL_COLOR,
            )
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("rank")
    axes.set_ylabel("time per step (ms)")
    axes.set_ylim(bottom=0)
    axes.set_title("certify: step time per rank", loc="left")
    axes.legend(fontsize=7, loc="lower right")
    return figure


# --- soak -----------------------------------------------------------------------------------------


def soak_plot(title: str, unit: str, series: Sequence[Series], time_label: str) -> Figure:
    """Each GPU's figure over the soak. With many GPUs: the range over all of them (grey band)
    and their median in time buckets, and the GPU lowest at the end drawn and named."""
    figure = _figure(3.4)
    axes = figure.add_subplot()
    named = len(series) <= NAMED_SERIES
    for index, line in enumerate(series if named else []):
        axes.plot(
            line.t_s,
            line.values,
            color=PASS_COLORS[index % len(PASS_COLORS)],
            linestyle=LINE_STYLES[index % len(LINE_STYLES)],
            linewidth=1.2,
            label=_legend(line.label),
        )
    if series and not named:
        times, low, middle, high = _band(series)
        axes.fill_between(
            times, low, high, color="#cccccc", step="mid", label=f"range over {len(series)} GPUs"
        )
        axes.plot(times, middle, color="#333333", linewidth=1.2, label="median GPU")
        lowest = min(series, key=lambda s: s.values[-1])
        axes.plot(
            lowest.t_s,
            lowest.values,
            color=FAIL_COLOR,
            linestyle="--",
            linewidth=1.6,
            label=f"lowest at the end: {lowest.label}",
        )
    axes.set_xlabel(time_label)
    axes.set_ylabel(unit)
    axes.set_title(title, loc="left")
    axes.legend(fontsize=7, loc="lower left", ncols=2 if named and len(series) > 5 else 1)
    return figure


BAND_BUCKETS = 60


def _band(series: Sequence[Series]) -> tuple[list[float], list[float], list[float], list[float]]:
    """(bucket mid time, min, median, max) over every series' points in BAND_BUCKETS equal
    time buckets; empty buckets left out."""
    end = max(t for line in series for t in line.t_s) or 1.0
    width = end / BAND_BUCKETS
    buckets: dict[int, list[float]] = {}
    for line in series:
        for t, value in zip(line.t_s, line.values, strict=True):
            buckets.setdefault(min(BAND_BUCKETS - 1, int(t / width)), []).append(value)
    times, low, middle, high = [], [], [], []
    for bucket in sorted(buckets):
        values = sorted(buckets[bucket])
        times.append((bucket + 0.5) * width)
        low.append(values[0])
        middle.append(values[len(values) // 2])
        high.append(values[-1])
    return times, low, middle, high
