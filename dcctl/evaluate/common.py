"""Pieces every evaluator shares: expectation errors, probe errors, IB ports, mount points.

An evaluator reads `expect` through dcctl.inventory.expect_keys.Expectations, which gives
each key's typed value or its default; checks are registered in dcctl.evaluate.registry.
"""

from __future__ import annotations

from typing import Any

from dcctl.evaluate.bounds import shown
from dcctl.inventory.expect_keys import BadExpectation

__all__ = [
    "BadExpectation",
    "expect_number",
    "ib_ports",
    "normalize_mountpoint",
    "port_name",
    "probe_error",
]


def expect_number(key: str, value: Any) -> float:
    """A threshold that does not come through the expect table, as a float (YAML booleans are
    not numbers); BadExpectation otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadExpectation(key, f"expected a number, got {value!r}", value)
    return float(value)


# --- facts ---------------------------------------------------------------------------------


def probe_error(facts: dict[str, Any], *probes: str) -> str | None:
    """Why the node could not tell: "<probe> probe failed: <error>" per failed probe, or None."""
    errors = facts.get("probe_errors") or {}
    found = [f"{name} probe failed: {shown(errors[name])}" for name in probes if errors.get(name)]
    return "; ".join(found) or None


def ib_ports(facts: dict[str, Any]) -> list[dict[str, Any]]:
    """The node's InfiniBand ports; RoCE NICs (link_layer Ethernet) sit in
    /sys/class/infiniband too, but they are not IB ports."""
    return [p for p in facts.get("ib") or [] if p.get("link_layer") in (None, "InfiniBand")]


def port_name(port: dict[str, Any]) -> str:
    """'mlx5_3/1': the HCA and its port number."""
    return f"{shown(port.get('device'))}/{shown(port.get('port'))}"


def normalize_mountpoint(path: str) -> str:
    """'/raid/' and '/raid' are one mount point; '/' stays '/'."""
    return path.rstrip("/") or "/"
