"""Fuzzing what other people hand dcctl: inventories and node payloads.

Random and adversarial YAML inventories go through the real command line; random and mutated
node payloads go through the controller's real path (payload extraction, evaluation, the run
document). Whatever comes in, the outcome is an exit code from the contract, never a
traceback, and never a hang: every example runs under a hard wall-clock limit.

The search is derandomized so CI sees the same examples every run; set DCCTL_FUZZ_EXAMPLES to
search longer locally (e.g. DCCTL_FUZZ_EXAMPLES=5000).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_runner import validate_document
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sysroots import H100_EXPECT, build_sysroot
from typer.testing import CliRunner

from dcctl.cli.main import app
from dcctl.evaluate.node import evaluate_node, health_expect
from dcctl.fleet.outcome import FleetRun, HostOutcome
from dcctl.fleet.runtime import run_task
from dcctl.inventory.model import Host
from dcctl.node.payload import PAYLOAD_END, PAYLOAD_START, format_payload
from dcctl.playbook.session import StepSpec, run_step
from dcctl.results.document import exit_code
from dcctl.transport.base import CommandResult, HostError

EXAMPLES = int(os.environ.get("DCCTL_FUZZ_EXAMPLES", "150"))
# Far above what any one example needs (milliseconds); reached only by a hang or a blow-up.
EXAMPLE_LIMIT_S = 20.0
INVENTORY_EXITS = {0, 2}  # valid, or a usage/input error: nothing else may come of a file
RUN_EXITS = {0, 1, 3}  # passed, a check failed, a host could not be evaluated

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class ExampleHung(Exception):
    """An example ran past EXAMPLE_LIMIT_S: a hang or an exponential blow-up."""


@contextlib.contextmanager
def hard_limit(seconds: float) -> Iterator[None]:
    """Raise in the test's own thread if the body outlives `seconds` (SIGALRM)."""

    def expire(_signum: int, _frame: object) -> None:
        raise ExampleHung(f"example did not finish within {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# ---- inventories -------------------------------------------------------------------------

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=40)
    | st.sampled_from(["22", "0x16", "{{ ansible_host }}", "~", "yes", "2001:db8::1", "*"])
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
# dcctl's own variables, their Ansible aliases, near misses and other tools' variables.
VARIABLE_NAMES = st.sampled_from(
    [
        "host", "port", "user", "key_file", "connection", "python", "jump", "env",
        "fabric_address", "scratch_dir", "expect", "ansible_host", "ansible_port",
        "ansible_user", "ansible_ssh_host", "ansible_ssh_port", "ansible_connection",
        "ansible_python_interpreter", "ansible_ssh_private_key_file", "pyhton", "http_port",
        "k3s_version", "ip", "ansible_group_priority",
    ]
) | st.text(min_size=1, max_size=12)  # fmt: skip
PLAUSIBLE_VALUES = st.sampled_from(
    ["local", "ssh", "127.0.0.1", "/usr/bin/python3", "root", "admin@bastion", 22, "22", 70000]
)
EXPECT = st.dictionaries(
    st.sampled_from(["os", "kernel", "driver", "cuda", "gpu_count", "gpu_model", "ib_rate"])
    | st.text(max_size=10),
    JSON_VALUES,
    max_size=4,
)
HOST_NAMES = st.sampled_from(
    ["localhost", "node1", "gpu[01:04]", "gpu[1:1000000000]", "web:2222", "n[a:c]", "[::1]", ""]
) | st.from_regex(r"[a-z0-9.\-\[\]:]{1,16}", fullmatch=True)
GROUP_NAMES = st.sampled_from(["all", "ungrouped", "rack1", "gpu", "local", "web"]) | st.text(
    min_size=1, max_size=10
)
VARIABLES = st.dictionaries(
    VARIABLE_NAMES, PLAUSIBLE_VALUES | JSON_VALUES | EXPECT, max_size=5
)  # fmt: skip


def groups(depth: int) -> st.SearchStrategy[Any]:
    body: dict[str, st.SearchStrategy[Any]] = {
        "hosts": st.dictionaries(HOST_NAMES, st.none() | VARIABLES, max_size=4)
        | st.text(max_size=20)
        | JSON_VALUES,
        "vars": VARIABLES | JSON_VALUES,
    }
    if depth > 0:
        body["children"] = st.dictionaries(GROUP_NAMES, st.none() | groups(depth - 1), max_size=3)
    return st.fixed_dictionaries({}, optional=body) | JSON_VALUES


STRUCTURED_INVENTORIES = st.dictionaries(GROUP_NAMES, st.none() | groups(2), max_size=3).map(
    lambda doc: yaml.safe_dump(doc, allow_unicode=True)
)
ALIAS_LEVEL = "g{i}: &g{i} {{children: {{a: *g{below}, b: *g{below}}}}}\n"
# Shapes that broke loaders before: aliases that multiply work, recursion, huge ranges, depth.
ADVERSARIAL_INVENTORIES = st.sampled_from(
    [
        "a: &a [*a]\n",
        "all: &r\n  children:\n    x: *r\n",
        "all:\n  hosts:\n    node[1:1000000000]:\n",
        "all:\n  hosts:\n    n[0:99999999999999999999]:\n",
        "all:\n  children:\n" + "".join(f"    g{i}:\n      children:\n" for i in range(1))
        + "        leaf: {hosts: {h1: }}\n",
        "g0: &g0 {hosts: {h: }}\n"
        + "".join(ALIAS_LEVEL.format(i=i, below=i - 1) for i in range(1, 40))
        + "all: {children: {top: *g39}}\n",
        "[" * 5000 + "]" * 5000 + "\n",
        "all:\n  vars: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n",
        "\ufeffall: {hosts: {localhost: {connection: local}}}\n",
        "all:\n\thosts: {}\n",
        "? [a, b]\n: 1\n",
        "all: !!python/object/apply:os.system ['true']\n",
        "---\nall: {}\n---\nall: {}\n",
        "all:\n  hosts:\n    h1: {port: 99999999999999999999999}\n",
        "all:\n  hosts:\n    h1: {port: .inf}\n",
        "",
        "\x00\x01\x02",
    ]
)  # fmt: skip
INVENTORY_TEXTS = (
    STRUCTURED_INVENTORIES
    | ADVERSARIAL_INVENTORIES
    | st.text(max_size=300)
    | st.tuples(STRUCTURED_INVENTORIES, st.integers(0, 400), st.text(max_size=20)).map(
        lambda t: t[0][: t[1]] + t[2] + t[0][t[1] :]  # a valid file with garbage spliced in
    )
)
LIMITS = st.none() | st.sampled_from(
    ["", "!gpu*", "all", "gpu[0]", "web:&db", "~^n", "a,,b", "node[1:1000000000]", "&", "!"]
) | st.text(max_size=20)  # fmt: skip


def run_cli(args: list[str]) -> Any:
    runner = CliRunner()
    with hard_limit(EXAMPLE_LIMIT_S):
        return runner.invoke(app, args, env={"DCCTL_INVENTORY": "", "COLUMNS": "120"})


def assert_contract_exit(result: Any, allowed: set[int]) -> None:
    crashed = result.exception is not None and not isinstance(result.exception, SystemExit)
    assert not crashed, f"traceback: {result.exception!r}\n{result.output[-2000:]}"
    assert result.exit_code in allowed, result.output[-2000:]
    assert "Traceback" not in result.output


@FUZZ
@given(text=INVENTORY_TEXTS, limit=LIMITS, command=st.sampled_from(["validate", "hosts", "show"]))
def test_any_inventory_ends_in_a_contract_exit_code(
    text: str, limit: str | None, command: str
) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "inventory.yaml"
        path.write_bytes(text.encode("utf-8", errors="surrogateescape"))
        args = [
            "-i",
            str(path),
            *(["-l", limit] if limit is not None else []),
            "inventory",
            command,
        ]
        assert_contract_exit(run_cli(args), INVENTORY_EXITS)


# ---- node payloads -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def healthy_facts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A real payload: the facts task run on the recorded healthy H100 node."""
    from dcctl.node.facts import collect_facts

    root = build_sysroot(tmp_path_factory.mktemp("sysroot"))
    previous = os.environ.get("DCCTL_SYSROOT")
    os.environ["DCCTL_SYSROOT"] = str(root)
    try:
        facts = collect_facts({"scratch_dir": "/var/tmp/dcctl", "xid_window_h": 24})
    finally:
        if previous is None:
            del os.environ["DCCTL_SYSROOT"]
        else:
            os.environ["DCCTL_SYSROOT"] = previous
    return json.loads(json.dumps(facts))  # exactly what crosses the wire


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, (*prefix, index))


def _replace(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    parent = document
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = value
    return document


@st.composite
def mutated_payloads(draw: st.DrawFn, facts: dict[str, Any]) -> Any:
    """The real payload with a few subtrees replaced by anything JSON can carry."""
    document = copy.deepcopy(facts)
    paths = list(_paths(document))
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(paths))
        document = _replace(document, path, draw(JSON_VALUES))
        paths = list(_paths(document))
    return document


def stdout_around(payload_text: str, draw: st.DrawFn) -> str:
    noise = st.text(max_size=60)
    shapes = [
        payload_text,
        draw(noise) + "\n" + payload_text + draw(noise),
        payload_text[: draw(st.integers(0, max(0, len(payload_text) - 1)))],
        PAYLOAD_START + draw(noise) + PAYLOAD_END,
        draw(noise),
    ]
    return draw(st.sampled_from(shapes))


class CannedTransport:
    """The node's side of one exec, as recorded: whatever it printed and its exit code."""

    def __init__(self, result: CommandResult) -> None:
        self._result = result

    def connect(self) -> None:
        return None

    def run(self, argv: Any, deadline: float, stdin: bytes | None = None) -> CommandResult:
        return self._result

    def close(self) -> None:
        return None


class CannedFleet:
    """Hands every host the canned node output through the real run_task path."""

    def __init__(self, result: CommandResult) -> None:
        self._transport = CannedTransport(result)

    def run(
        self, hosts: Any, task: str, params_for: Any, timeout_s: float, on_outcome: Any
    ) -> FleetRun:
        for host in hosts:
            try:
                payload = run_task(self._transport, host, task, params_for(host), deadline=1e18)
                on_outcome(HostOutcome(host, payload, None, 0.0))
            except HostError as error:
                on_outcome(HostOutcome(host, None, error, 0.0))
        return FleetRun()


def judge_canned(result: CommandResult, expect: dict[str, Any]) -> dict[str, Any]:
    host = Host(name="node1", address="127.0.0.1", connection="local", expect=expect)
    spec = StepSpec(
        command="check",
        task="facts",
        params_for=lambda h: {"xid_window_h": health_expect(h.expect)["xid_window_h"]},
        evaluate=lambda h, facts: evaluate_node(facts, h.expect),
        timeout_s=60.0,
    )
    with tempfile.TemporaryDirectory() as state, hard_limit(EXAMPLE_LIMIT_S):
        step = run_step(
            spec, [host], "fuzz.yaml", Path(state), CannedFleet(result), lambda *_: None
        )
        document: dict[str, Any] = json.loads((step.run_dir / "run.json").read_text())
    return document


@FUZZ
@given(data=st.data())
def test_any_node_payload_ends_in_a_contract_exit_code(
    healthy_facts: dict[str, Any], data: st.DataObject
) -> None:
    payload = data.draw(mutated_payloads(healthy_facts))
    stdout = stdout_around(format_payload(payload), data.draw)
    code = data.draw(st.sampled_from([0, 1, 2, 97, 98, 124, 137, -1]))
    expect = data.draw(st.sampled_from([{}, H100_EXPECT]))
    document = judge_canned(CommandResult(code, stdout, data.draw(st.text(max_size=80))), expect)
    validate_document(document)
    assert exit_code(document) in RUN_EXITS
    (host,) = document["hosts"]
    if host["status"] == "error":
        assert host["error"]["message"].strip()


@FUZZ
@given(count=st.integers(1, 5), size=st.sampled_from([10, 1000, 20000]))
def test_huge_and_deep_payloads_stay_contract_outcomes(count: int, size: int) -> None:
    """Payload shapes a hostile or broken node could send: deep nesting, long lists."""
    deep = "[" * size * count + "]" * size * count
    xids = [
        {"xid": i, "pci": f"0000:{i % 256:02x}:00.0", "text": "x", "time": ""} for i in range(size)
    ]
    flood = {"kernel_log": {"source": "journal", "window_h": 24, "xids": xids}}
    for stdout in (PAYLOAD_START + deep + PAYLOAD_END, format_payload(flood)):
        document = judge_canned(CommandResult(0, stdout, ""), H100_EXPECT)
        validate_document(document)
        assert exit_code(document) in RUN_EXITS
