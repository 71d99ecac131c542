"""Judges a certify job: one short data-parallel training run across a group's nodes.

A group is certified only when all of these hold (each failed one is a reason, one line,
naming the rank, host and GPU it concerns where there is one):
- no node or rank failed (GangRun.error, a node's error, a rank's error document, a rank
  that wrote nothing);
- every rank's parameters are bitwise identical at every checksummed step: data-parallel
  replicas apply the same averaged gradient, so a rank off the majority computed something
  else (silent data corruption); with no majority (a 2-rank split) every rank is named;
- every rank's replay (the first steps re-run from the same seed) gave bitwise the same losses;
- the final loss (the mean of the last LOSS_TAIL global losses) reaches the target;
- no rank is a straggler (see `_stragglers`);
- the job's throughput meets expectation: MFU against the GPUs' dense peak (bf16 runs on GPUs
  with a known peak only) and samples/s where the inventory sets a floor.

Thresholds come from the group's hosts' `expect`: the strictest value among them.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dcctl.evaluate.bounds import listed, shown
from dcctl.evaluate.cluster_stats import (
    MAX_ROBUST_Z,
    finite,
    floored_mad,
    mean,
    median,
    node_problems,
    robust_z,
    strictest,
)
from dcctl.evaluate.gang_input import ClusterJudgement, GangRun, NodeRun, cluster_result
from dcctl.evaluate.gpu_peaks import dense_peak
from dcctl.evaluate.result import Result, Status

RESULT_ID = "certify"
RANK_ID = "certify.rank"
NODE_ID = "certify.node"
# The final loss is the mean of this many last steps' global losses: one step's loss moves
# with its batch, the mean of a few does not.
LOSS_TAIL = 5
MAX_CURVE_POINTS = 100
# A straggler must also be this much slower than the median in absolute terms: on a tiny
# model (CPU, --quick) 10 % of a millisecond step is scheduler noise, not a slow GPU.
MIN_EXCESS_S = 0.0005
TFLOP = 1e12


@dataclass(frozen=True)
class Thresholds:
    """What the group is judged by; None: not judged."""

    loss_target: float | None
    max_straggler: float
    min_mfu: float | None
    min_samples_per_s: float | None


@dataclass(frozen=True)
class RankView:
    """A rank that wrote figures: its document and where it ran."""

    rank: int
    node: NodeRun
    doc: Mapping[str, Any]
    gpu: dict[str, Any] | None  # {"index", "pci_bus_id", "serial"}
    gpu_name: str | None

    @property
    def host(self) -> str:
        return self.node.host.name

    @property
    def label(self) -> str:
        """ "rank 1 on b (GPU 1, 00000000:5D:00.0)" or "rank 1 on b"."""
        return f"rank {self.rank} on {self.host}{_gpu_words(self.gpu)}"

    def section(self, name: str) -> Mapping[str, Any]:
        value = self.doc.get(name)
        return value if isinstance(value, Mapping) else {}


@dataclass
class Finding:
    """One reason the group is not certified, and the ranks and hosts it names."""

    text: str
    ranks: set[int] = field(default_factory=set)
    hosts: set[str] = field(default_factory=set)


# --- reading the documents ---------------------------------------------------------------------


def _gpu_words(gpu: Mapping[str, Any] | None) -> str:
    if gpu is None:
        return ""
    bus = f", {shown(gpu['pci_bus_id'])}" if gpu.get("pci_bus_id") else ""
    return f" (GPU {shown(gpu.get('index'))}{bus})"


def _payload_gpu(node: NodeRun, gpu: Mapping[str, Any]) -> Mapping[str, Any]:
    """The node payload's entry for a rank's GPU (by uuid, bus id, then index), for its
    serial and, where the rank did not say, its name."""
    listed_gpus = [g for g in (node.payload or {}).get("gpus") or [] if isinstance(g, Mapping)]
    for key in ("uuid", "pci_bus_id", "index"):
        wanted = gpu.get(key)
        if wanted is None:
            continue
        for entry in listed_gpus:
            if entry.get(key) == wanted:
                return entry
    return {}


def _view(node: NodeRun, doc: Mapping[str, Any]) -> RankView:
    gpu = doc.get("gpu")
    if doc.get("device") != "cuda" or not isinstance(gpu, Mapping):
        return RankView(doc["rank"], node, doc, None, None)
    known = _payload_gpu(node, gpu)
    ref = {
        "index": gpu.get("index"),
        "pci_bus_id": gpu.get("pci_bus_id") or known.get("pci_bus_id"),
        "serial": known.get("serial"),
    }
    name = gpu.get("name") or known.get("name")
    return RankView(doc["rank"], node, doc, ref, str(name) if name else None)


@dataclass
class Docs:
    """Every rank document of the run, sorted out."""

    views: list[RankView] = field(default_factory=list)  # ranks with figures, by rank
    errors: list[tuple[NodeRun, Mapping[str, Any]]] = field(default_factory=list)
    missing: dict[str, list[int]] = field(default_factory=dict)  # host -> ranks with no doc


def _expected_ranks(run: GangRun, node: NodeRun) -> range:
    # torchrun numbers ranks node by node: node rank i holds i*nproc .. (i+1)*nproc - 1.
    return range(node.node_rank * run.nproc_per_node, (node.node_rank + 1) * run.nproc_per_node)


def _sort_docs(run: GangRun) -> Docs:
    docs = Docs()
    seen: set[int] = set()
    for node, doc in run.rank_docs():
        rank = doc.get("rank")
        if type(rank) is not int or rank in seen:
            continue
        seen.add(rank)
        if "error" in doc:
            docs.errors.append((node, doc))
        else:
            docs.views.append(_view(node, doc))
    docs.views.sort(key=lambda view: view.rank)
    for node in run.nodes:
        absent = [rank for rank in _expected_ranks(run, node) if rank not in seen]
        if absent:
            docs.missing[node.host.name] = absent
    return docs


def _thresholds(run: GangRun, views: list[RankView]) -> Thresholds:
    hosts = [node.host for node in run.nodes]
    target = strictest(hosts, "certify_max_final_loss", "max")
    if target is None and views:
        target = finite(views[0].doc.get("loss_target"))
    straggler = strictest(hosts, "certify_max_straggler", "max")
    return Thresholds(
        loss_target=target,
        max_straggler=0.10 if straggler is None else straggler,
        min_mfu=strictest(hosts, "certify_min_mfu", "min"),
        min_samples_per_s=strictest(hosts, "certify_min_samples_per_s", "min"),
    )


# --- failures --------------------------------------------------------------------------------


def _ranks_text(ranks: Sequence[int]) -> str:
    word = "rank" if len(ranks) == 1 else "ranks"
    return f"{word} {listed((str(r) for r in ranks), len(ranks))}"


def _node_problems(node: NodeRun, missing: list[int]) -> list[str]:
    parts = node_problems(node)
    if missing:
        parts.append(f"{_ranks_text(missing)} wrote no result")
    return parts


def _failure_findings(run: GangRun, docs: Docs) -> list[Finding]:
    found = []
    if run.error:
        where = f" on {', '.join(run.failed_hosts)}" if run.failed_hosts else ""
        named = {r for host in run.failed_hosts for r in docs.missing.get(host, [])}
        found.append(
            Finding(f"job failed{where}: {shown(run.error)}", named, set(run.failed_hosts))
        )
    for node in run.nodes:
        host = node.host.name
        parts = _node_problems(node, docs.missing.get(host, []))
        if parts:
            text = f"node {host}: {'; '.join(parts)}"
            found.append(Finding(text, set(docs.missing.get(host, [])), {host}))
    for node, doc in docs.errors:
        text = f"rank {doc['rank']} on {node.host.name} failed: {shown(doc.get('error'))}"
        found.append(Finding(text, {doc["rank"]}, {node.host.name}))
    return found


def _malformed_findings(views: list[RankView]) -> list[Finding]:
    """A rank whose document lacks a figure the verdict needs cannot be certified."""
    found = []
    for view in views:
        lacking = [
            name
            for name, ok in (
                ("local_s.p50", finite(view.section("local_s").get("p50")) is not None),
                ("samples_per_s", finite(view.doc.get("samples_per_s")) is not None),
                ("checksums", bool(view.doc.get("checksums"))),
                ("replay", isinstance(view.section("replay").get("match"), bool)),
                ("global_losses", bool(_losses(view))),
            )
            if not ok
        ]
        if lacking:
            text = f"{view.label} wrote no {', '.join(lacking)}"
            found.append(Finding(text, {view.rank}, {view.host}))
    return found


# --- checksums and replay --------------------------------------------------------------------


def _checksums_by_step(views: list[RankView]) -> dict[int, dict[int, str]]:
    by_step: dict[int, dict[int, str]] = {}
    for view in views:
        for entry in view.doc.get("checksums") or []:
            if isinstance(entry, Mapping) and type(entry.get("step")) is int:
                by_step.setdefault(entry["step"], {})[view.rank] = str(entry.get("value"))
    return by_step


def _off_steps(by_step: dict[int, dict[int, str]]) -> Counter[int]:
    """How many checksummed steps each rank was off the majority (or in a split) at."""
    off: Counter[int] = Counter()
    for values in by_step.values():
        counts = Counter(values.values()).most_common()
        if len(counts) < 2:
            continue
        tie = counts[0][1] == counts[1][1]
        off.update(rank for rank, value in values.items() if tie or value != counts[0][0])
    return off


def _step_findings(
    step: int, values: dict[int, str], by_rank: dict[int, RankView], reported: set[int]
) -> list[Finding]:
    counts = Counter(values.values()).most_common()
    if len(counts) < 2:
        return []
    if counts[0][1] == counts[1][1]:
        ranks = sorted(rank for rank in values if rank not in reported)
        if not ranks:
            return []
        sizes = " vs ".join(str(count) for _, count in counts)
        labels = [by_rank[rank].label for rank in ranks]
        text = (
            f"checksum mismatch at step {step}: the {len(values)} ranks split {sizes} with no "
            f"majority, so which is wrong cannot be told: {listed(labels, len(labels), '; ')}"
        )
        return [Finding(text, set(ranks), {by_rank[rank].host for rank in ranks})]
    agreed, others = counts[0]
    found = []
    for rank in sorted(values):
        if values[rank] != agreed and rank not in reported:
            view = by_rank[rank]
            text = (
                f"checksum mismatch at step {step}: {view.label} differs from the other "
                f"{others} rank{'s' if others > 1 else ''}"
            )
            found.append(Finding(text, {rank}, {view.host}))
    return found


def _checksum_findings(views: list[RankView]) -> list[Finding]:
    """One finding per rank at the first checksummed step it was off; a rank stays off once a
    parameter differs, so later steps only add how often."""
    by_step = _checksums_by_step(views)
    by_rank = {view.rank: view for view in views}
    off = _off_steps(by_step)
    found: list[Finding] = []
    reported: set[int] = set()
    for step in sorted(by_step):
        for finding in _step_findings(step, by_step[step], by_rank, reported):
            times = max(off[rank] for rank in finding.ranks)
            finding.text += f" (off at {times} of {len(by_step)} checksummed steps)"
            reported |= finding.ranks
            found.append(finding)
    return found


def _replay_findings(views: list[RankView]) -> list[Finding]:
    found = []
    for view in views:
        replay = view.section("replay")
        if replay.get("match") is not False:
            continue
        step = replay.get("first_mismatch_step")
        at = f" at step {shown(step)}" if step is not None else ""
        where = view.host + (f", {_gpu_words(view.gpu)[2:-1]}" if view.gpu else "")
        text = (
            f"replay mismatch on rank {view.rank} ({where}){at}: re-running the first "
            f"{shown(replay.get('steps'))} steps from the same seed gave different losses"
        )
        found.append(Finding(text, {view.rank}, {view.host}))
    return found


# --- loss ------------------------------------------------------------------------------------


def _losses(view: RankView) -> list[float]:
    losses = view.doc.get("global_losses")
    if not isinstance(losses, list):
        return []
    # The worker writes a non-finite loss as null; it stays NaN so that it fails the target
    # (NaN compares false) instead of vanishing from the mean.
    return [
        float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else math.nan
        for x in losses
    ]


def _final_loss(losses: list[float]) -> float | None:
    return mean(losses[-LOSS_TAIL:]) if losses else None


def loss_curve(losses: Sequence[float], points: int = MAX_CURVE_POINTS) -> list[list[float]]:
    """[[step, loss], ...] with steps from 1, at most `points` of them, evenly spaced and
    always holding the first and the last."""
    count = len(losses)
    if count <= points:
        indices = list(range(count))
    else:
        indices = sorted({round(i * (count - 1) / (points - 1)) for i in range(points)})
    return [[index + 1, losses[index]] for index in indices]


def _loss_findings(losses: list[float], target: float | None) -> list[Finding]:
    final = _final_loss(losses)
    if final is None:
        return []  # a rank without losses is named by _malformed_findings
    if target is None:
        return [Finding(f"no loss target: final loss {final:.4g} cannot be judged")]
    if final <= target:
        return []
    tail = min(LOSS_TAIL, len(losses))
    return [
        Finding(
            f"loss not reached: final loss {final:.4g} (mean of the last {tail} steps) above the "
            f"target {target:g}"
        )
    ]


# --- stragglers ------------------------------------------------------------------------------


def _local_p50(view: RankView) -> float | None:
    return finite(view.section("local_s").get("p50"))


def _stragglers(views: list[RankView], max_fraction: float) -> list[tuple[RankView, float, float]]:
    """(rank, its local p50, the median of all) for each straggler: a rank whose median local
    step time (its work outside the gradient allreduce, which every rank waits in for the
    slowest) is more than `max_fraction` above the median of all ranks', or whose robust
    z-score (MAD floored) is above MAX_ROBUST_Z; either way at least MIN_EXCESS_S above."""
    timed = [(view, p50) for view in views if (p50 := _local_p50(view)) is not None]
    if len(timed) < 2:
        return []
    figures = [p50 for _, p50 in timed]
    # The MAD floor follows the limit: an inventory that loosens the limit for ranks that
    # share cores loosens the robust rule with it (at 10 %, the floor is 2.5 %).
    center, spread = median(figures), floored_mad(figures, max_fraction / 4)
    found = []
    for view, p50 in timed:
        excess = p50 - center
        flagged = excess > max_fraction * center or robust_z(p50, center, spread) > MAX_ROBUST_Z
        if flagged and excess >= MIN_EXCESS_S:
            found.append((view, p50, center))
    return found


def _straggler_findings(stragglers: list[tuple[RankView, float, float]]) -> list[Finding]:
    found = []
    for view, p50, center in stragglers:
        above = (p50 - center) / center * 100 if center > 0 else float("inf")
        text = (
            f"straggler: {view.label} median local step time {_ms(p50)}, {above:.0f}% above the "
            f"median of all ranks ({_ms(center)})"
        )
        found.append(Finding(text, {view.rank}, {view.host}))
    return found


# --- throughput ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Throughput:
    samples_per_s: float | None  # the whole job: ranks are data-parallel, so their sum
    mfu: float | None  # against the dense peak of the model's dtype; None when unknown
    peak_tflops: float | None  # the sum over ranks
    dtype: str | None
    flops_per_sample: float | None


def _throughput(views: list[RankView]) -> Throughput:
    rates = [finite(view.doc.get("samples_per_s")) for view in views]
    job = sum(rate for rate in rates if rate is not None) if views else None
    model = views[0].section("model") if views else {}
    dtype = model.get("dtype")
    flops = finite(model.get("flops_per_sample"))
    peaks = [
        dense_peak(view.gpu_name, str(dtype)) if view.gpu_name and dtype else None for view in views
    ]
    # A CPU rank or a GPU with no known peak leaves the fraction unknown for the whole job.
    known = [peak for peak in peaks if peak is not None]
    total_peak = sum(known) if views and len(known) == len(views) else None
    mfu = None
    if job is not None and flops is not None and total_peak:
        mfu = job * flops / (total_peak * TFLOP)
    return Throughput(job, mfu, total_peak, str(dtype) if dtype else None, flops)


def _throughput_findings(speed: Throughput, limits: Thresholds) -> list[Finding]:
    found = []
    if speed.mfu is not None and limits.min_mfu is not None and speed.mfu < limits.min_mfu:
        flops = speed.flops_per_sample or 0.0
        text = (
            f"throughput below expectation: MFU {speed.mfu:.2f} < {limits.min_mfu:g} "
            f"({_rate(speed.samples_per_s)} samples/s x {flops / 1e9:.3g} GFLOP per sample, "
            f"against a dense {speed.dtype} peak of {speed.peak_tflops:,.0f} TFLOP/s)"
        )
        found.append(Finding(text))
    minimum = limits.min_samples_per_s
    if minimum is not None and speed.samples_per_s is not None and speed.samples_per_s < minimum:
        text = (
            f"throughput below expectation: {_rate(speed.samples_per_s)} samples/s < "
            f"{_rate(minimum)}"
        )
        found.append(Finding(text))
    return found


def _judged_limits(limits: Thresholds, speed: Throughput) -> Thresholds:
    """The thresholds as judged: MFU only for bf16 runs whose every GPU has a known peak (the
    default's reference is bf16 training on tensor cores)."""
    if speed.mfu is None or speed.dtype != "bf16":
        return Thresholds(limits.loss_target, limits.max_straggler, None, limits.min_samples_per_s)
    return limits


# --- words -----------------------------------------------------------------------------------


def _ms(seconds: float | None) -> str:
    return "?" if seconds is None else f"{seconds * 1e3:.3g} ms"


def _rate(value: float | None) -> str:
    return "?" if value is None else f"{value:,.0f}"


# --- results ---------------------------------------------------------------------------------


def _figures(view: RankView) -> dict[str, Any]:
    step = view.section("step_s")
    return {
        "samples_per_s": finite(view.doc.get("samples_per_s")),
        "step_p50_s": finite(step.get("p50")),
        "step_p99_s": finite(step.get("p99")),
        "local_p50_s": _local_p50(view),
    }


def _rank_result(view: RankView, findings: list[Finding]) -> Result:
    figures = _figures(view)
    head = f"rank {view.rank}{_gpu_words(view.gpu)}: {_rate(figures['samples_per_s'])} samples/s"
    head += (
        f", step p50 {_ms(figures['step_p50_s'])} (p99 {_ms(figures['step_p99_s'])}), "
        f"local p50 {_ms(figures['local_p50_s'])}"
    )
    named = [finding.text for finding in findings if view.rank in finding.ranks]
    status: Status = "fail" if named else "pass"
    message = f"{head}; {'; '.join(named)}" if named else head
    return Result(RANK_ID, status, message, figures, None, "bench", view.gpu, figures)


def _launched(run: GangRun) -> bool:
    """Whether the job started on the nodes (their `gang` tasks returned): what went wrong
    then is a finding about the cluster, not a failure to evaluate it."""
    return any(node.payload is not None for node in run.nodes)


def _node_results(run: GangRun, docs: Docs, any_figures: bool) -> dict[str, list[Result]]:
    found: dict[str, list[Result]] = {}
    for node in run.nodes:
        host = node.host.name
        parts = _node_problems(node, docs.missing.get(host, []))
        failed = host in run.failed_hosts
        if failed and run.error:
            parts.insert(0, f"the job failed here: {shown(run.error)}")
        if not parts:
            continue
        # The node the gang names as the cause fails; one caught in another's failure could
        # not be judged.
        status: Status = "fail" if failed and (any_figures or _launched(run)) else "error"
        found[host] = [Result(NODE_ID, status, f"node {host}: {'; '.join(parts)}", kind="bench")]
    for node, doc in docs.errors:
        message = f"rank {doc['rank']} failed: {shown(doc.get('error'))}"
        found.setdefault(node.host.name, []).append(Result(RANK_ID, "error", message, kind="bench"))
    return found


def _host_results(run: GangRun, docs: Docs, findings: list[Finding]) -> dict[str, list[Result]]:
    results: dict[str, list[Result]] = {node.host.name: [] for node in run.nodes}
    for host, node_results in _node_results(run, docs, bool(docs.views)).items():
        results.setdefault(host, []).extend(node_results)
    for view in docs.views:
        results.setdefault(view.host, []).append(_rank_result(view, findings))
    return results


def _versions(run: GangRun, views: list[RankView]) -> dict[str, dict[str, Any]]:
    versions: dict[str, dict[str, Any]] = {}
    for node in run.nodes:
        payload = node.payload or {}
        first = next((v for v in views if v.node is node), None)
        ranks = first.section("versions") if first else {}
        versions[node.host.name] = {
            "torch": ranks.get("torch"),
            "nccl": ranks.get("nccl"),
            "cuda": ranks.get("cuda") or payload.get("cuda"),
            "driver": payload.get("driver"),
        }
    return versions


def _rank_entry(view: RankView, named: set[int], stragglers: set[int]) -> dict[str, Any]:
    return {
        "rank": view.rank,
        "host": view.host,
        "local_rank": view.doc.get("local_rank"),
        "gpu": view.gpu,
        **_figures(view),
        "straggler": view.rank in stragglers,
        "checksum_ok": view.rank not in named,
        "replay_ok": view.section("replay").get("match") is True,
    }


def _message(
    run: GangRun, reasons: list[str], losses: list[float], speed: Throughput, limits: Thresholds
) -> str:
    if reasons:
        more = f" (+{len(reasons) - 1} more)" if len(reasons) > 1 else ""
        return f"not certified: {reasons[0]}{more}"
    final = _final_loss(losses)
    return (
        f"certified: {run.world_size} ranks on {len(run.nodes)} "
        f"host{'s' if len(run.nodes) > 1 else ''}, final loss "
        f"{final:.4g} (target {limits.loss_target:g}), {_rate(speed.samples_per_s)} samples/s"
    )


def _metrics(
    run: GangRun, views: list[RankView], losses: list[float], speed: Throughput
) -> dict[str, Any]:
    steps = [view.section("step_s") for view in views]
    p50s = [x for s in steps if (x := finite(s.get("p50"))) is not None]
    p99s = [x for s in steps if (x := finite(s.get("p99"))) is not None]
    return {
        "samples_per_s": speed.samples_per_s,
        "samples_per_s_per_rank": (
            speed.samples_per_s / len(views) if speed.samples_per_s is not None else None
        ),
        # The job steps at the pace of its ranks together: the median rank's p50, and the
        # worst rank's p99.
        "step_p50_s": median(p50s) if p50s else None,
        "step_p99_s": max(p99s) if p99s else None,
        "loss_initial": losses[0] if losses else None,
        "loss_final": _final_loss(losses),
        "mfu": speed.mfu,
        "ranks": run.world_size,
        "nodes": len(run.nodes),
    }


@dataclass(frozen=True)
class Judged:
    """Everything the verdict found, before it is written out."""

    docs: Docs
    limits: Thresholds  # as judged: min_mfu None where MFU is not judged
    losses: list[float]
    speed: Throughput
    stragglers: list[tuple[RankView, float, float]]
    checksums: list[Finding]
    findings: list[Finding]


def _judge(run: GangRun) -> Judged:
    docs = _sort_docs(run)
    views = docs.views
    losses = _losses(views[0]) if views else []
    speed = _throughput(views)
    limits = _judged_limits(_thresholds(run, views), speed)
    stragglers = _stragglers(views, limits.max_straggler)
    failures = _failure_findings(run, docs)
    checksums = _checksum_findings(views)
    findings = failures + _malformed_findings(views) + checksums + _replay_findings(views)
    findings += _loss_findings(losses, limits.loss_target) + _straggler_findings(stragglers)
    if not failures:  # with a rank missing, the job's figures are partial
        findings += _throughput_findings(speed, limits)
    return Judged(docs, limits, losses, speed, stragglers, checksums, findings)


def _thresholds_json(limits: Thresholds) -> dict[str, Any]:
    return {
        "loss_target": limits.loss_target,
        "final_loss_steps": LOSS_TAIL,
        "max_straggler": limits.max_straggler,
        "min_mfu": limits.min_mfu,
        "min_samples_per_s": limits.min_samples_per_s,
    }


def _certificate(run: GangRun, judged: Judged, verdict: str, reasons: list[str]) -> dict[str, Any]:
    views = judged.docs.views
    checksum_named = {rank for finding in judged.checksums for rank in finding.ranks}
    straggling = {view.rank for view, _, _ in judged.stragglers}
    first = views[0].doc if views else {}
    return {
        "verdict": verdict,
        "reasons": reasons,
        "model": dict(first.get("model") or {}),
        "seed": first.get("seed"),
        "steps": first.get("steps"),
        "loss_curve": loss_curve(judged.losses),
        "ranks": [_rank_entry(view, checksum_named, straggling) for view in views],
        "versions": _versions(run, views),
        "thresholds": _thresholds_json(judged.limits),
    }


def evaluate_certify(run: GangRun) -> ClusterJudgement:
    """The group's `certify` cluster result (with its certificate) and each host's results."""
    judged = _judge(run)
    views = judged.docs.views
    reasons = [finding.text for finding in judged.findings]
    if not views and not reasons:
        reasons = ["no rank wrote figures"]
    # The job never started (a node unreachable, no torch): an error, not a finding about the
    # cluster. A job that started and broke (a rank died) is a finding: not certified.
    status: Status = (
        "error" if not views and not _launched(run) else ("fail" if reasons else "pass")
    )
    verdict = "not certified" if reasons else "certified"
    message = _message(run, reasons, judged.losses, judged.speed, judged.limits)
    metrics = _metrics(run, views, judged.losses, judged.speed)
    thresholds = _thresholds_json(judged.limits)
    result = Result(RESULT_ID, status, message, verdict, thresholds, "bench", metrics=metrics)
    item = cluster_result(
        result, run.hosts, certificate=_certificate(run, judged, verdict, reasons)
    )
    return ClusterJudgement([item], _host_results(run, judged.docs, judged.findings))
