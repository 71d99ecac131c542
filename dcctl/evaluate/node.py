"""Everything `dcctl check` judges on one node: the inventory's expectations, then the health
checks, which run with the expect table's defaults where the inventory sets nothing.

Read within the bounds of dcctl.evaluate.bounds: judging one host takes milliseconds whatever
its node sent; and of the shape dcctl.evaluate.shape checks: a fact of another shape is one
`payload.shape` error, never an exception that ends the host's evaluation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dcctl.evaluate.bounds import bound_facts, fold_by_id
from dcctl.evaluate.check import evaluate_facts
from dcctl.evaluate.dcgm import evaluate_dcgm
from dcctl.evaluate.gpu_health import evaluate_gpu_health
from dcctl.evaluate.io_health import evaluate_io_health
from dcctl.evaluate.node_health import evaluate_node_health
from dcctl.evaluate.result import Result
from dcctl.evaluate.shape import checked_facts
from dcctl.inventory.expect_keys import HEALTH_DEFAULTS, expectations


def health_expect(expect: Mapping[str, Any]) -> dict[str, Any]:
    """The host's expectations as plain values with every health threshold filled in: what a
    node task is sent (its xid_window_h)."""
    return {**HEALTH_DEFAULTS, **expect}


def evaluate_node(facts: dict[str, Any], expect: Mapping[str, Any]) -> list[Result]:
    settings = expectations(expect)
    bounded, too_long = bound_facts(facts)
    # After the cuts: the shape check then reads a bounded part of the facts too.
    checked, malformed = checked_facts(bounded)
    return fold_by_id(
        [
            *evaluate_facts(checked, settings),
            *evaluate_gpu_health(checked, settings),
            *evaluate_node_health(checked, settings),
            *evaluate_io_health(checked, settings),
            *evaluate_dcgm(checked),
            *too_long,
            *malformed,
        ]
    )
