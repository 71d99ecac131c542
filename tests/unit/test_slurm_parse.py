"""Reading `scontrol show node` output, and planning drains and resumes from it.

Real captures from other people's clusters (tests/fixtures/real/slurm/, source beside each)
come first; the layouts no public capture shows (multi-line with a reason, JSON) follow.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dcctl.audit.slurm import MAX_REASON_CHARS, Decision, DrainAction, apply, plan, reason_for
from dcctl.audit.slurm_parse import SlurmNode, is_drained, parse_nodes

REAL = Path(__file__).parents[1] / "fixtures" / "real" / "slurm"


def read_real(name: str) -> str:
    return (REAL / name).read_text()


def test_real_one_line_output_with_drained_nodes_and_a_reason_mid_line() -> None:
    nodes = parse_nodes(read_real("slurm_exporter-25.11.2-show-nodes-o-drain.txt"))

    assert list(nodes) == ["c1", "c2", "c3", "c4", "c5", "c6", "c7"]
    assert nodes["c1"] == SlurmNode(
        "c1",
        "MIXED+DRAIN+DYNAMIC_NORM+MAINTENANCE+RESERVED",
        drained=True,
        reason="planned_maintenance",
    )
    assert nodes["c4"].drained and nodes["c4"].reason == "planned_maintenance"
    assert [n.name for n in nodes.values() if n.drained] == ["c1", "c4"]
    assert all(nodes[name].reason is None for name in ("c2", "c3", "c5", "c6", "c7"))
    assert nodes["c2"].state == "MIXED+DYNAMIC_NORM+MAINTENANCE+RESERVED+PLANNED"


def test_real_one_line_output_without_any_reason() -> None:
    nodes = parse_nodes(read_real("slurm_exporter-24.11.7-show-nodes-o.txt"))

    assert {name: (n.state, n.drained, n.reason) for name, n in nodes.items()} == {
        "na1": ("MIXED+DYNAMIC_NORM", False, None),
        "na3": ("IDLE+DYNAMIC_NORM", False, None),
        "nb9": ("IDLE+DYNAMIC_NORM", False, None),
    }


def test_a_real_capture_has_its_source_beside_it() -> None:
    for sample in REAL.glob("*.txt"):
        if sample.name.endswith(".source.txt"):
            continue
        source = sample.with_name(sample.stem + ".source.txt")
        assert source.read_text().startswith("Source: https://github.com/"), sample.name


MULTI_LINE = """\
NodeName=gpu07 Arch=x86_64 CoresPerSocket=32
   CPUAlloc=0 CPUEfctv=128 CPUTot=128 CPULoad=0.12
   State=IDLE+DRAIN ThreadsPerCore=2 TmpDisk=0 Weight=1 Owner=N/A MCS_label=N/A
   Partitions=gpu
   CfgTRES=cpu=128,mem=2000000M,billing=128,gres/gpu=8
   AllocTRES=
   Reason=dcctl: nccl busbw=310 GB/s State=DOWN? [root@2026-11-28T13:35:03]

NodeName=gpu08 Arch=x86_64 CoresPerSocket=32
   State=DOWN+DRAIN+NOT_RESPONDING ThreadsPerCore=2
   Reason=Not responding [slurm@2026-11-28T09:00:00]
   Comment=(null)
"""


def test_the_multi_line_layout_keeps_a_reason_holding_equals_signs_and_state() -> None:
    nodes = parse_nodes(MULTI_LINE)

    assert nodes["gpu07"] == SlurmNode(
        "gpu07", "IDLE+DRAIN", True, "dcctl: nccl busbw=310 GB/s State=DOWN?"
    )
    assert nodes["gpu08"].reason == "Not responding"
    assert nodes["gpu08"].drained


def test_a_reason_without_its_stamp_stops_at_the_next_known_field() -> None:
    text = "NodeName=a1 State=IDLE+DRAIN Reason=bad fan=2 Comment=rack 4\n"

    assert parse_nodes(text)["a1"].reason == "bad fan=2"


@pytest.mark.parametrize(
    ("state", "drained"),
    [
        ("IDLE+DRAIN", True),
        ("DOWN*+DRAIN", True),
        ("MIXED+DRAIN+DYNAMIC_NORM", True),
        ("DRAINED", True),
        ("DRAINING", True),
        ("DRAINED*", True),
        ("IDLE", False),
        ("DOWN+NOT_RESPONDING", False),
        ("IDLE+CLOUD+POWERED_DOWN", False),
        ("", False),
    ],
)
def test_drained_is_the_drain_flag_in_any_form(state: str, drained: bool) -> None:
    assert is_drained(state) is drained


def test_json_from_slurm_22_05_and_23_02() -> None:
    old = {"nodes": [{"name": "a", "state": "idle", "state_flags": ["DRAIN"], "reason": "x"}]}
    new = {"nodes": [{"name": "b", "state": ["IDLE", "DRAIN"], "reason": ""}, {"name": 3}]}

    assert parse_nodes(json.dumps(old)) == {"a": SlurmNode("a", "IDLE+DRAIN", True, "x")}
    assert parse_nodes(json.dumps(new)) == {"b": SlurmNode("b", "IDLE+DRAIN", True, None)}


@pytest.mark.parametrize("text", ["", "No nodes in the system\n", "{not json", "NodeName=\n"])
def test_output_without_nodes_gives_none(text: str) -> None:
    assert parse_nodes(text) == {}


# --- reasons -----------------------------------------------------------------------------


def test_reason_is_one_trimmed_line_starting_with_the_prefix() -> None:
    assert reason_for("GPU 3:\n  Xid 79\tfallen off the bus") == (
        "dcctl: GPU 3: Xid 79 fallen off the bus"
    )
    assert reason_for('quoted "thing"') == 'dcctl: quoted "thing'
    assert reason_for("  \n ") == "dcctl: failed check"

    long = reason_for("x" * 1000)
    assert len(long) == MAX_REASON_CHARS
    assert long.startswith("dcctl: xxx") and long.endswith("...")


# --- planning ----------------------------------------------------------------------------

IDLE = SlurmNode("n1", "IDLE", False, None)
OURS = SlurmNode("n2", "IDLE+DRAIN", True, "dcctl: GPU 0 missing")
HANDS = SlurmNode("n3", "IDLE+DRAIN", True, "bad fan")
DOWN = SlurmNode("n4", "DOWN+NOT_RESPONDING", False, "Not responding")
NODES = {node.name: node for node in (IDLE, OURS, HANDS, DOWN)}


def decided(failing: dict[str, str], passing: list[str]) -> list[tuple[str, str | None, str]]:
    return [
        (d.node, d.action.kind if d.action else None, d.note) for d in plan(failing, passing, NODES)
    ]


def test_a_failing_node_is_drained_with_the_finding_as_reason() -> None:
    [decision] = plan({"n1": "GPU 0 missing"}, [], NODES)

    assert decision.action == DrainAction("drain", "n1", "dcctl: GPU 0 missing")


def test_a_node_dcctl_drained_gets_a_new_reason_only_when_the_finding_changed() -> None:
    assert decided({"n2": "GPU 0 missing"}, []) == [
        ("n2", None, "already drained by dcctl for this finding")
    ]
    new_finding = decided({"n2": "GPU 1 missing"}, [])
    assert new_finding == [("n2", "drain", "new finding: update the reason")]


def test_a_passing_node_is_resumed_only_when_dcctl_drained_it() -> None:
    assert decided({}, ["n1", "n2", "n3", "n4"]) == [
        ("n1", None, "not drained: nothing to do"),
        ("n2", "resume", "passes again: resume"),
        ("n3", None, "drained by someone else (reason 'bad fan'): left alone"),
        ("n4", None, "not drained: nothing to do"),
    ]


def test_a_failing_node_with_someone_elses_reason_is_left_alone() -> None:
    assert decided({"n3": "x", "n4": "y"}, []) == [
        ("n3", None, "drained by someone else (reason 'bad fan'): left alone"),
        (
            "n4",
            None,
            "DOWN+NOT_RESPONDING with reason 'Not responding' set by someone else: left alone",
        ),
    ]


def test_failing_wins_over_passing_and_unknown_names_get_a_note() -> None:
    assert decided({"n1": "x", "ghost": "y"}, ["n1", "ghost2"]) == [
        ("n1", "drain", "fails: drain"),
        ("ghost", None, "not a Slurm node: nothing to drain"),
        ("ghost2", None, "not a Slurm node: nothing to resume"),
    ]


def test_update_commands_are_argv_lists_with_the_reason_as_one_argument() -> None:
    drain = DrainAction("drain", "n1", "dcctl: a; rm -rf / $(x)")

    assert drain.argv("scontrol") == [
        "scontrol",
        "update",
        "NodeName=n1",
        "State=DRAIN",
        "Reason=dcctl: a; rm -rf / $(x)",
    ]
    assert DrainAction("resume", "n1", None).argv("/opt/slurm/bin/scontrol") == [
        "/opt/slurm/bin/scontrol",
        "update",
        "NodeName=n1",
        "State=RESUME",
    ]


@pytest.mark.parametrize("name", ["n[1-9]", "a,b", "a b", "-h", "x=y"])
def test_a_node_name_scontrol_would_expand_is_refused(name: str) -> None:
    action = DrainAction("drain", name, "dcctl: x")
    [outcome] = apply([Decision(name, action, "drained")], scontrol="/nonexistent/scontrol")

    assert outcome.status == "failed"
    assert outcome.message == f"refusing node name {name!r}"
