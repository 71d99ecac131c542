"""One host's document over the steps of a run: each step's results, tagged with the step,
one after another; the facts of every step; and a status that a failure in any step decides.
"""

from __future__ import annotations

from typing import Any


def tag_results(document: dict[str, Any], step_name: str) -> dict[str, Any]:
    """The host document with each result naming the step that made it."""
    results = [{**result, "step": step_name} for result in document["results"]]
    return {**document, "results": results}


def _merged_facts(earlier: dict[str, Any], later: dict[str, Any]) -> dict[str, Any]:
    """A later step's section replaces an earlier one of the same name (a benchmark's `fio`
    figures over check's note that fio is installed; the GPUs a benchmark ran on); gang jobs
    add to the list of jobs. Each step's own facts stay whole in the history and are what
    that step's comparisons read."""
    facts = {**earlier, **later}
    if isinstance(earlier.get("gang"), list) and isinstance(later.get("gang"), list):
        facts["gang"] = earlier["gang"] + later["gang"]
    return facts


def merged_status(document: dict[str, Any]) -> str:
    """failed when any result failed, as the exit code ranks a failure above a host that
    could not be evaluated; else error when some step could not evaluate the host."""
    if any(result.get("status") == "fail" for result in document["results"]):
        return "failed"
    return "error" if document["error"] is not None else "passed"


def merge_host_documents(earlier: dict[str, Any] | None, later: dict[str, Any]) -> dict[str, Any]:
    """`later` (one step's document of a host) folded into what the host had so far."""
    if earlier is None:
        return dict(later)
    merged = {
        **earlier,
        "error": earlier["error"] or later["error"],
        "duration_s": round(earlier["duration_s"] + later["duration_s"], 3),
        "facts": _merged_facts(earlier["facts"], later["facts"]),
        "results": earlier["results"] + later["results"],
    }
    merged["status"] = merged_status(merged)
    return merged
