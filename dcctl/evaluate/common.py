"""Pieces every evaluator shares: expectation values, probe errors, IB ports, mount points."""

from __future__ import annotations

from typing import Any

from dcctl.evaluate.bounds import shown


class BadExpectation(ValueError):
    """An `expect` value of the wrong shape; reported as an `error` result for its check."""


# --- expectation values --------------------------------------------------------------------


def expect_integer(key: str, value: Any) -> int:
    """An integer (YAML booleans are not)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadExpectation(f"invalid expectation {key}: expected an integer, got {value!r}")
    return value


def expect_count(key: str, value: Any) -> int:
    """A non-negative integer: how many of something are allowed or wanted."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadExpectation(f"invalid expectation {key}: expected a count, got {value!r}")
    return value


def expect_number(key: str, value: Any) -> float:
    """An integer or a float, as a float (YAML booleans are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadExpectation(f"invalid expectation {key}: expected a number, got {value!r}")
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
