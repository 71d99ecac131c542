"""The audit `dcctl audit` runs when not given a playbook. It is built here, not read from
`playbooks/audit.yaml`, because an installed dcctl has no playbooks directory; a test holds
the two to the same steps."""

from __future__ import annotations

from dcctl.playbook.model import Playbook, PlaybookStep
from dcctl.playbook.options import defaults

AUDIT_SOURCE = "<built-in: audit>"


def audit_playbook() -> Playbook:
    """Health checks with DCGM's quick diagnostic, then a quick GEMM whose figures keep the
    baselines and the fleet comparison current; both run whatever the other found."""
    check = PlaybookStep(
        name="check", kind="check", options={**defaults("check"), "dcgm": 1}, on_fail="continue"
    )
    gemm = PlaybookStep(
        name="bench-gemm",
        kind="bench",
        options={**defaults("bench"), "benchmark": "gemm", "quick": True},
        on_fail="continue",
    )
    return Playbook(name="audit", source=AUDIT_SOURCE, steps=(check, gemm))
