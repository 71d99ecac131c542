"""How a check is registered: one row in its evaluator's table, built by `check()`.

A row names the Result id the check gives, the function that judges, and the `expect` keys
it reads. The function is called with those keys' typed values, in that order, so a key is
named once, here, and checked against the expect table when the module loads. Results come
out in table order.

A check whose keys all have no value (unset, and no default) is not run: no judgement.
Where an unset key has a rule of its own (warn near the slowdown temperature), the row says
`judges_unset` and the function gets None. A value of the wrong kind (one that did not come
through the inventory) makes that check one `error` result; the others still run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from dcctl.evaluate.common import probe_error
from dcctl.evaluate.result import Result
from dcctl.inventory.expect_keys import EXPECT_KEYS, BadExpectation, Expectations

Judge = TypeVar("Judge", bound=Callable[..., Any])
# The common shape: judge(facts, *values) -> results.
FactCheck = Callable[..., list[Result]]


@dataclass(frozen=True)
class Check(Generic[Judge]):
    """One registered check. `fact` and `probes`: the fact it judges and the probes that
    gather it; when a probe failed and left the fact unknown, the check is that error."""

    id: str
    judge: Judge
    keys: tuple[str, ...]
    fact: str | None = None
    probes: tuple[str, ...] = ()
    judges_unset: bool = False

    def values(self, expect: Expectations) -> tuple[Any, ...] | None:
        """The keys' typed values; None when the check is not run (nothing to judge by).
        BadExpectation for a value of the wrong kind."""
        values = tuple(expect.get(key) for key in self.keys)
        if self.keys and not self.judges_unset and all(v is None for v in values):
            return None
        return values

    def error(self, exc: BadExpectation) -> Result:
        return Result(self.id, "error", str(exc), None, exc.value)


def check(
    result_id: str,
    judge: Judge,
    *keys: str,
    fact: str | None = None,
    probes: tuple[str, ...] = (),
    judges_unset: bool = False,
) -> Check[Judge]:
    """A table row. A key missing from the expect table is a mistake caught at import."""
    unknown = [key for key in keys if key not in EXPECT_KEYS]
    if unknown:
        raise LookupError(f"check {result_id} reads keys not in the expect table: {unknown}")
    return Check(result_id, judge, keys, fact, probes, judges_unset)


def run_checks(
    table: Iterable[Check[FactCheck]], facts: dict[str, Any], expect: Expectations
) -> list[Result]:
    """Every check of `table` over one node's facts, in table order."""
    results: list[Result] = []
    for row in table:
        try:
            values = row.values(expect)
        except BadExpectation as exc:
            results.append(row.error(exc))
            continue
        if values is None:
            continue
        error = probe_error(facts, *row.probes) if row.fact is not None else None
        # A probe error matters only when it left the fact unknown (a fallback may fill it).
        if error is not None and facts.get(row.fact or "") is None:
            expected = values[0] if len(values) == 1 else None
            results.append(Result(row.id, "error", error, None, _shown(expected)))
            continue
        results.extend(row.judge(facts, *values))
    return results


def _shown(expected: Any) -> Any:
    """A typed value as a result's `expected`: JSON-safe (a version requirement's text)."""
    plain = expected is None or isinstance(expected, (str, int, float, list, dict))
    return expected if plain else str(expected)
