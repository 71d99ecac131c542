"""Drain and resume against a real slurmctld (Debian's, with munge), read back with scontrol."""

from __future__ import annotations

from pathlib import Path
from shlex import quote

import pytest
from slurm_lab import SCONTROL_BIN, SlurmLab, slurm_missing

from dcctl.audit.slurm import (
    Decision,
    DrainAction,
    SlurmError,
    apply,
    parse_nodes,
    plan,
    read_nodes,
    reason_for,
)
from dcctl.audit.slurm_parse import SlurmNode

XID_FINDING = "GPU 3 (0000:4e:00.0): Xid 79, fallen off the bus"


@pytest.fixture
def slurm(slurm_lab: SlurmLab, monkeypatch: pytest.MonkeyPatch) -> SlurmLab:
    """The lab, with SLURM_CONF pointing scontrol at it for the code under test."""
    monkeypatch.setenv("SLURM_CONF", str(slurm_lab.conf))
    return slurm_lab


def show(lab: SlurmLab, node: str) -> str:
    """One node's `scontrol show node -o` line, straight from slurmctld."""
    done = lab.scontrol("show", "node", "-o", node)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_failing_node_is_drained_with_a_dcctl_reason_then_resumed_when_it_passes(
    slurm: SlurmLab,
) -> None:
    decisions = plan({"n1": XID_FINDING}, [], read_nodes(["n1"]))
    outcomes = apply(decisions)

    assert [(o.status, o.action.kind) for o in outcomes] == [("done", "drain")]
    drained = parse_nodes(show(slurm, "n1"))["n1"]
    assert drained.drained
    assert drained.reason == reason_for(XID_FINDING)
    assert drained.reason is not None and drained.reason.startswith("dcctl: GPU 3")

    outcomes = apply(plan({}, ["n1"], read_nodes(["n1"])))

    assert [(o.status, o.action.kind) for o in outcomes] == [("done", "resume")]
    resumed = parse_nodes(show(slurm, "n1"))["n1"]
    assert not resumed.drained
    assert resumed.reason is None


def test_a_new_finding_rewrites_dcctls_reason_and_the_same_one_leaves_it(slurm: SlurmLab) -> None:
    apply(plan({"n2": "fio read 120 MB/s below 2000"}, [], read_nodes(["n2"])))
    first = show(slurm, "n2")

    same = plan({"n2": "fio read 120 MB/s below 2000"}, [], read_nodes(["n2"]))
    assert [d.action for d in same] == [None]
    assert apply(same) == []
    assert show(slurm, "n2") == first  # not even the reason's timestamp moved

    apply(plan({"n2": "GPU 0 ECC errors"}, [], read_nodes(["n2"])))
    assert parse_nodes(show(slurm, "n2"))["n2"].reason == "dcctl: GPU 0 ECC errors"


def test_a_node_drained_by_a_person_is_never_touched(slurm: SlurmLab) -> None:
    done = slurm.scontrol("update", "NodeName=n3", "State=DRAIN", "Reason=bad fan")
    assert done.returncode == 0, done.stderr
    before = show(slurm, "n3")

    failing = plan({"n3": XID_FINDING}, [], read_nodes(["n3"]))
    passing = plan({}, ["n3"], read_nodes(["n3"]))

    assert [d.action for d in failing + passing] == [None, None]
    assert "someone else (reason 'bad fan'): left alone" in failing[0].note
    assert "someone else (reason 'bad fan'): left alone" in passing[0].note
    assert apply(failing + passing) == []
    assert show(slurm, "n3") == before


def test_dry_run_changes_nothing_and_says_what_it_would_do(slurm: SlurmLab) -> None:
    apply(plan({"n5": "GPU 1 missing"}, [], read_nodes(["n5"])))
    before = {node: show(slurm, node) for node in ("n4", "n5")}

    decisions = plan({"n4": XID_FINDING}, ["n5"], read_nodes(["n4", "n5"]))
    outcomes = apply(decisions, dry_run=True)

    assert [(o.node, o.status) for o in outcomes] == [("n4", "dry-run"), ("n5", "dry-run")]
    assert outcomes[0].message == f"would drain n4 (reason {reason_for(XID_FINDING)!r})"
    assert outcomes[1].message == "would resume n5"
    assert {node: show(slurm, node) for node in ("n4", "n5")} == before


def test_names_slurm_does_not_know_get_a_note_and_no_action(slurm: SlurmLab) -> None:
    nodes = read_nodes(["n6", "gpu-not-in-slurm"])

    decisions = plan({"gpu-not-in-slurm": XID_FINDING}, ["n6"], nodes)

    assert set(nodes) == {"n6"}
    assert [(d.node, d.action, d.note) for d in decisions] == [
        ("gpu-not-in-slurm", None, "not a Slurm node: nothing to drain"),
        ("n6", None, "not drained: nothing to do"),
    ]


def test_an_update_slurm_refuses_is_a_failed_outcome_of_one_line(slurm: SlurmLab) -> None:
    action = DrainAction("drain", "n99", reason_for("anything"))

    [outcome] = apply([Decision("n99", action, "drained")])

    assert outcome.status == "failed"
    assert "n99" in outcome.message
    assert "\n" not in outcome.message


def test_the_multi_line_layout_reads_the_same_as_the_one_line_layout(slurm: SlurmLab) -> None:
    slurm.scontrol("update", "NodeName=n7", "State=DRAIN", "Reason=dcctl: x=1 State=IDLE [odd]")
    multi_line = slurm.scontrol("show", "node", "n7").stdout
    one_line = show(slurm, "n7")

    assert "\n   " in multi_line  # really the indented layout
    assert parse_nodes(multi_line) == parse_nodes(one_line)
    node = parse_nodes(multi_line)["n7"]
    assert node.drained
    assert node.reason == "dcctl: x=1 State=IDLE [odd]"


def test_a_missing_scontrol_is_one_line_error(tmp_path: Path) -> None:
    absent = str(tmp_path / "bin" / "scontrol")

    with pytest.raises(SlurmError) as raised:
        read_nodes(["n1"], scontrol=absent)
    idle = {"n1": SlurmNode("n1", "IDLE", drained=False, reason=None)}
    [outcome] = apply(plan({"n1": "x"}, [], idle), scontrol=absent)

    assert str(raised.value) == f"{absent} not found: install slurm-client or give its path"
    assert outcome.status == "failed"
    assert outcome.message == str(raised.value)


def test_scontrol_that_cannot_reach_a_controller_is_one_line_error(tmp_path: Path) -> None:
    missing = slurm_missing()
    if missing is not None:
        pytest.skip(missing)
    conf = tmp_path / "slurm.conf"
    # Nothing listens on port 9; short timeouts keep scontrol from retrying for seconds.
    settings = ["ClusterName=gone", "SlurmctldHost=nowhere(127.0.0.1)", "SlurmctldPort=9"]
    conf.write_text("\n".join([*settings, "MessageTimeout=1", "TCPTimeout=1"]) + "\n")
    wrapper = tmp_path / "scontrol"
    wrapper.write_text(f'#!/bin/sh\nSLURM_CONF={quote(str(conf))} exec {SCONTROL_BIN} "$@"\n')
    wrapper.chmod(0o755)

    with pytest.raises(SlurmError) as raised:
        read_nodes(["n1"], scontrol=str(wrapper))

    assert str(raised.value).startswith("scontrol show node failed (exit 1): ")
    assert "\n" not in str(raised.value)
