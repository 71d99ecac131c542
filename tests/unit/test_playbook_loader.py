"""Playbook files: the shipped ones load, a hand-written one with anchors loads, and every
kind of mistake is refused as one `FILE:LINE: KEY: problem` line before anything runs."""

from __future__ import annotations

import inspect
import textwrap
from pathlib import Path
from typing import Any

import pytest

from dcctl.cli.bench import bench
from dcctl.cli.certify import certify
from dcctl.cli.check import check
from dcctl.errors import InputError
from dcctl.playbook.loader import load_playbook
from dcctl.playbook.options import OPTIONS, defaults, with_quick

PLAYBOOKS = Path(__file__).resolve().parents[2] / "playbooks"


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "book.yaml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def _refused(tmp_path: Path, text: str) -> str:
    path = _write(tmp_path, text)
    with pytest.raises(InputError) as caught:
        load_playbook(path)
    message = str(caught.value)
    assert "\n" not in message
    return message.removeprefix(f"{path}:")


def test_every_shipped_playbook_loads() -> None:
    shipped = sorted(path.name for path in PLAYBOOKS.glob("*.yaml"))
    assert shipped == ["acceptance.yaml", "audit.yaml", "check.yaml"]
    for path in PLAYBOOKS.glob("*.yaml"):
        playbook = load_playbook(str(path))
        assert playbook.name == path.stem
        assert playbook.description
        assert playbook.from_file


def test_acceptance_runs_the_issue_s_steps_in_order() -> None:
    playbook = load_playbook(str(PLAYBOOKS / "acceptance.yaml"))
    assert [step.name for step in playbook.steps] == [
        "check",
        "bench-gemm",
        "bench-allreduce",
        "bench-allreduce-cluster",
        "bench-fio",
        "certify",
    ]
    assert [step.on_fail for step in playbook.steps] == ["stop"] + ["continue"] * 5
    cluster = playbook.steps[3]
    assert (cluster.options["benchmark"], cluster.options["scope"]) == ("allreduce", "cluster")


def test_audit_is_check_with_dcgm_1_and_a_quick_gemm() -> None:
    steps = load_playbook(str(PLAYBOOKS / "audit.yaml")).steps
    assert [(step.kind, step.options.get("dcgm")) for step in steps] == [
        ("check", 1),
        ("bench", None),
    ]
    assert steps[1].options["benchmark"] == "gemm"
    assert steps[1].options["quick"] is True


def test_quick_from_the_command_line_reaches_every_step_that_has_it() -> None:
    playbook = with_quick(load_playbook(str(PLAYBOOKS / "acceptance.yaml")))
    for step in playbook.steps:
        assert step.options.get("quick", True) is True
        assert ("quick" in step.options) == (step.kind != "check")


def test_a_hand_written_playbook_with_anchors_and_merges_loads(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """\
        name: nightly
        description: gemm twice, then certify
        x-strict: &strict {gemm_min_efficiency: 0.8, gemm_min_tflops_bf16: 700}
        x-gang: &gang {nproc_per_node: 2, port: 29600, join_timeout: 60}
        steps:
          - name: gemm-bf16
            bench: &gemm {benchmark: gemm, dtype: [bf16, bf16], size: 4096}
            expect: *strict
            timeout: 900
            on_fail: &go continue
          - name: gemm-fp16
            bench: {<<: *gemm, dtype: fp16, size: "4096,8192,1024"}
            expect: {<<: *strict, gemm_min_efficiency: 0.6, driver: ~}
            on_fail: *go
          - name: ring
            bench: {<<: *gang, benchmark: allreduce, scope: pairs, sizes: 16:48, net_only: yes}
          - certify: {<<: *gang, steps: 50}
        """,
    )
    playbook = load_playbook(path)
    first, second, ring, last = playbook.steps
    assert (playbook.name, playbook.source) == ("nightly", path)
    assert first.options["dtype"] == ["bf16"]
    assert first.options["size"] == "4096"
    assert first.expect == {"gemm_min_efficiency": 0.8, "gemm_min_tflops_bf16": 700}
    assert (first.timeout_s, first.on_fail, first.line) == (900.0, "continue", 6)
    assert second.options["dtype"] == ["fp16"]
    assert second.options["size"] == "4096,8192,1024"
    assert second.expect == {
        "gemm_min_efficiency": 0.6,
        "gemm_min_tflops_bf16": 700,
        "driver": None,  # unsets the inventory's driver for this step
    }
    assert (second.on_fail, second.timeout_s) == ("continue", None)
    # Kept as written: YAML 1.1 would read 16:48 as the base-60 integer 1008.
    assert ring.options["sizes"] == "16:48"
    assert (ring.options["net_only"], ring.options["port"], ring.options["scope"]) == (
        True,
        29600,
        "pairs",
    )
    assert ring.on_fail == "stop"
    assert last.name == "certify"
    gang = {"nproc_per_node": 2, "port": 29600, "join_timeout": 60.0, "steps": 50}
    assert last.options == {**defaults("certify"), **gang}


def test_an_empty_option_mapping_or_null_gives_the_command_s_defaults(tmp_path: Path) -> None:
    path = _write(tmp_path, "steps:\n  - check:\n  - name: again\n    check: {dcgm: ~}\n")
    playbook = load_playbook(path)
    assert playbook.name == "book"
    assert [step.options for step in playbook.steps] == [{"dcgm": None}, {"dcgm": None}]


def _cli_default(value: Any) -> Any:
    default = getattr(value, "default", value)
    return getattr(default, "value", default)  # an Enum's value


@pytest.mark.parametrize(
    ("kind", "command"), [("check", check), ("bench", bench), ("certify", certify)]
)
def test_options_and_defaults_are_the_command_line_s(kind: Any, command: Any) -> None:
    parameters = inspect.signature(command).parameters
    cli = {
        name: _cli_default(parameter.default)
        for name, parameter in parameters.items()
        # The run's own options, not the step's: its time limit, and where its report goes.
        if name not in ("ctx", "timeout", "report_file")
    }
    assert set(OPTIONS[kind]) == set(cli)
    assert defaults(kind) == cli


# (playbook, line, key, part of the problem): one per kind of mistake.
MISTAKES = [
    ("steps: [{check: {}}]\nnmae: x\n", 2, "nmae", "unknown key; did you mean 'name'?"),
    ("steps:\n  - check: {}\n    on_failure: stop\n", 3, "on_failure", "did you mean 'on_fail'?"),
    ("steps:\n  - bench: {dtyp: [bf16]}\n", 2, "bench.dtyp", "did you mean 'dtype'?"),
    ("steps:\n  - bench: {net-only: true}\n", 2, "bench.net-only", "did you mean 'net_only'?"),
    ("steps:\n  - check: {timeout: 5}\n", 2, "check.timeout", "belongs to the step"),
    ("steps:\n  - check: {dcgm: 4}\n", 2, "check.dcgm", "from 1 to 3, got 4"),
    ("steps:\n  - check: {dcgm: yes}\n", 2, "check.dcgm", "whole number from 1 to 3, got yes"),
    ("steps:\n  - bench: {quick: 1}\n", 2, "bench.quick", "expected true or false, got 1"),
    ("steps:\n  - bench: {benchmark: nccl}\n", 2, "bench.benchmark", "one of gemm, allreduce"),
    ("steps:\n  - bench: {dtype: [bf16, int8]}\n", 2, "bench.dtype", "got 'int8'"),
    ('steps:\n  - bench: {size: "1,2"}\n', 2, "bench.size", "N or M,N,K"),
    ("steps:\n  - bench: {sizes: 8G:1K}\n", 2, "bench.sizes", "MIN <= MAX"),
    ("steps:\n  - bench: {duration: -1}\n", 2, "bench.duration", "seconds from 0"),
    ("steps:\n  - certify: {port: 70000}\n", 2, "certify.port", "from 1 to 65535"),
    ("steps:\n  - certify: {steps: 0}\n", 2, "certify.steps", "from 1 to"),
    ("steps:\n  - certify:\n      join_timeout: .inf\n", 3, "certify.join_timeout", "seconds"),
    ("steps:\n  - bench: {scope: cluster}\n", 2, "bench.scope", "only allreduce spans nodes"),
    ("steps:\n  - bench: {benchmark: allreduce, port: 2}\n", 2, "bench.port", "scope cluster"),
    ("steps:\n  - bench: {benchmark: fio, dtype: bf16}\n", 2, "bench.dtype", "fio does not read"),
    ("steps:\n  - bench: gemm\n", 2, "bench", "write {benchmark: gemm}"),
    ("steps:\n  - check: {}\n    timeout: 0\n", 3, "timeout", "seconds from 1 to 604800, got 0"),
    ("steps:\n  - check: {}\n    timeout: 1e9\n", 3, "timeout", "seconds from 1 to 604800"),
    ("steps:\n  - check: {}\n    on_fail: retry\n", 3, "on_fail", "continue, stop, got 'retry'"),
    (
        "steps:\n  - check: {}\n    expect: {gpu_cnt: 8}\n",
        3,
        "expect.gpu_cnt",
        "unknown key; did you mean 'gpu_count'?",
    ),
    (
        "steps:\n  - bench: {}\n    expect:\n      gemm_min_efficiency: 7\n",
        4,
        "expect.gemm_min_efficiency",
        "a fraction from 0 to 1, got 7",
    ),
    ("steps:\n  - check: {}\n    expect: {driver: 'latest'}\n", 3, "expect.driver", "version"),
    ("name: x\n", 1, "steps", "missing"),
    ("steps: []\n", 1, "steps", "empty; a playbook needs at least one step"),
    ("steps: {check: {}}\n", 1, "steps", "expected a list of steps, got a mapping"),
    ("steps:\n  - check\n", 2, "steps", "expected a step such as"),
    ("steps:\n  - timeout: 5\n", 2, "steps", "needs one of check, bench or certify"),
    ("steps:\n  - check: {}\n    bench: {}\n", 3, "bench", "also has 'check'"),
    ("steps:\n  - check: {}\n  - check: {dcgm: 1}\n", 3, "name", "duplicate step name 'check'"),
    (
        "steps:\n  - name: a\n    check: {}\n  - name: a\n    certify: {}\n",
        4,
        "name",
        "duplicate step name 'a' (first at line 2)",
    ),
    ("steps:\n  - name: 'a b'\n    check: {}\n", 2, "name", "expected letters, digits"),
    ("steps:\n  - check: {dcgm: 1}\n    check: {}\n", 3, "check", "written twice (first at"),
    ("steps:\n  - check: {dcgm: 1, dcgm: 2}\n", 2, "check.dcgm", "written twice"),
    (
        "steps:\n  - check: {}\n    expect: {gpu_count: 8, gpu_count: 4}\n",
        3,
        "expect.gpu_count",
        "written twice",
    ),
    ("- check: {}\n", 1, "top level", "expected a mapping with 'steps:', got a list"),
    ("name: [x]\nsteps: [{check: {}}]\n", 1, "name", "expected a non-empty string"),
]


@pytest.mark.parametrize(("text", "line", "key", "problem"), MISTAKES)
def test_each_mistake_names_file_line_and_key(
    tmp_path: Path, text: str, line: int, key: str, problem: str
) -> None:
    message = _refused(tmp_path, text)
    assert message.startswith(f"{line}: {key}: "), message
    assert problem in message, message


def test_a_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    message = _refused(tmp_path, "steps:\n  - check: {}\n\tbench: {}\n")
    assert message.startswith("3: invalid YAML: "), message
    assert "'\\t'" in message


@pytest.mark.parametrize(
    ("text", "problem"),
    [("", "playbook is empty"), ("# only a comment\n", "playbook is empty")],
)
def test_an_empty_file_is_refused(tmp_path: Path, text: str, problem: str) -> None:
    assert problem in _refused(tmp_path, text)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.yaml")
    with pytest.raises(InputError, match=r"nope\.yaml: playbook file not found"):
        load_playbook(missing)
    with pytest.raises(InputError, match="is a directory"):
        load_playbook(str(tmp_path))


def test_an_input_error_exits_2() -> None:
    assert InputError.exit_code == 2
