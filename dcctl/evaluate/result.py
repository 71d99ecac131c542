"""A judged check: what was observed, what was expected, and a sentence a person understands."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Status = Literal["pass", "warn", "fail", "skip", "error"]
Kind = Literal["check", "bench"]


@dataclass(frozen=True)
class Result:
    id: str
    status: Status
    message: str
    observed: Any = None
    expected: Any = None
    kind: Kind = "check"
    # The GPU a finding concerns: {"index", "pci_bus_id", "serial"}; None for node-wide results.
    gpu: dict[str, Any] | None = None
    # A benchmark's figures ({"tflops": 781.2, "efficiency": 0.79}), for reports and history.
    metrics: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        document = {
            "id": self.id,
            "kind": self.kind,
            "status": self.status,
            "observed": self.observed,
            "expected": self.expected,
            "message": self.message,
        }
        if self.gpu is not None:
            document["gpu"] = self.gpu
        if self.metrics is not None:
            document["metrics"] = self.metrics
        return document
