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

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "status": self.status,
            "observed": self.observed,
            "expected": self.expected,
            "message": self.message,
        }
