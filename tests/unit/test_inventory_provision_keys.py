"""The inventory variables `dcctl provision` reads (runtime_venv, torch_spec, pip_index_url,
pip_extra_args, wheelhouse, provision_python) and `python_set`: defaults, precedence, and
the one-line `file:line: key: problem` error each mistake gets."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from dcctl.errors import InputError
from dcctl.inventory import load_inventory
from dcctl.inventory.model import DEFAULT_RUNTIME_VENV, Inventory

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Work in tmp_path so error messages carry the short relative file name."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def load(directory: Path, text: str) -> Inventory:
    (directory / "rack.yaml").write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return load_inventory("rack.yaml", env={})


def load_error(directory: Path, text: str) -> str:
    with pytest.raises(InputError) as caught:
        load(directory, text)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_defaults_when_nothing_is_set(in_tmp: Path) -> None:
    host = load(in_tmp, "all: {hosts: {gpu1: }}").host("gpu1")
    assert host.runtime_venv == DEFAULT_RUNTIME_VENV == "/opt/dcctl/venv"
    assert host.torch_spec is None
    assert host.pip_index_url is None
    assert host.pip_extra_args == ()
    assert host.wheelhouse is None
    assert host.provision_python is None
    assert host.python_set is False
    assert host.provision_unusable is None


def test_group_values_and_host_overrides(in_tmp: Path) -> None:
    inventory = load(
        in_tmp,
        """
        all:
          vars:
            runtime_venv: /opt/site/venv
            torch_spec: "torch==2.4.1"
            pip_index_url: https://pypi.mirror.example.com/simple
            pip_extra_args: [--trusted-host, pypi.mirror.example.com, --timeout, 60]
          children:
            h100:
              vars: {torch_spec: "torch==2.5.1"}
              hosts:
                gpu1:
                gpu2: {wheelhouse: /srv/wheels, pip_extra_args: ~}
        """,
    )
    gpu1, gpu2 = inventory.host("gpu1"), inventory.host("gpu2")
    assert gpu1.runtime_venv == "/opt/site/venv"
    assert gpu1.torch_spec == "torch==2.5.1"  # the child group's pin wins over all's
    assert gpu1.pip_index_url == "https://pypi.mirror.example.com/simple"
    # A YAML number in the list is the text as written: pip gets argv strings.
    assert gpu1.pip_extra_args == ("--trusted-host", "pypi.mirror.example.com", "--timeout", "60")
    assert gpu2.wheelhouse == "/srv/wheels"
    assert gpu2.pip_extra_args == ()  # null unsets what a parent set


def test_pip_extra_args_as_one_string_is_split_as_a_shell_would(in_tmp: Path) -> None:
    host = load(
        in_tmp,
        """
        all:
          hosts:
            gpu1: {pip_extra_args: "--trusted-host 'mirror one' --no-cache-dir"}
        """,
    ).host("gpu1")
    assert host.pip_extra_args == ("--trusted-host", "mirror one", "--no-cache-dir")


@pytest.mark.parametrize(
    ("line", "python_set"),
    [
        ("python: /usr/bin/python3", True),
        ("ansible_python_interpreter: /usr/bin/python3", True),
        ("ansible_python_interpreter: auto_silent", False),  # Ansible discovers: dcctl's default
        ("python: ~", False),
        ("user: root", False),
    ],
)
def test_python_set_says_whether_the_inventory_chose_the_interpreter(
    in_tmp: Path, line: str, python_set: bool
) -> None:
    host = load(in_tmp, f"all:\n  hosts:\n    gpu1: {{{line}}}\n").host("gpu1")
    assert host.python_set is python_set


def test_python_set_at_a_group_level_counts_for_its_hosts(in_tmp: Path) -> None:
    inventory = load(
        in_tmp,
        """
        all:
          vars: {ansible_python_interpreter: /usr/bin/python3}
          hosts:
            gpu1:
            gpu2: {ansible_python_interpreter: ~}
        """,
    )
    assert inventory.host("gpu1").python_set is True
    assert inventory.host("gpu2").python_set is False


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "runtime_venv: venvs/dcctl",
            "rack.yaml:4: runtime_venv: expected an absolute path, got 'venvs/dcctl'",
        ),
        (
            "runtime_venv: /",
            "rack.yaml:4: runtime_venv: expected a directory of its own, got '/'",
        ),
        (
            "runtime_venv: //",
            "rack.yaml:4: runtime_venv: expected a directory of its own, got '//'",
        ),
        (
            "runtime_venv: /a/x/../v",
            "rack.yaml:4: runtime_venv: expected a path without . or .. parts, got '/a/x/../v'",
        ),
        (
            "wheelhouse: /srv/./wheels",
            "rack.yaml:4: wheelhouse: expected a path without . or .. parts, got '/srv/./wheels'",
        ),
        (
            "wheelhouse: ///",
            "rack.yaml:4: wheelhouse: expected a directory of its own, got '///'",
        ),
        (
            "scratch_dir: /var/tmp/..",
            "rack.yaml:4: scratch_dir: expected a path without . or .. parts, got '/var/tmp/..'",
        ),
        (
            "torch_spec: torch>=2.2,,<3",
            "rack.yaml:4: torch_spec: not a pip requirement: ",
        ),
        (
            "torch_spec: torch 2.4",
            "rack.yaml:4: torch_spec: not a pip requirement: ",
        ),
        (
            "provision_python: [python3.11]",
            "rack.yaml:4: provision_python: expected a non-empty string, got a list",
        ),
        (
            "wheelhouse: wheels",
            "rack.yaml:4: wheelhouse: expected an absolute path, got 'wheels'",
        ),
        (
            "torch_spec: --pre",
            "rack.yaml:4: torch_spec: expected a pip requirement such as 'torch==2.4.1', "
            "got '--pre'; pip options go in pip_extra_args",
        ),
        (
            "torch_spec: [torch]",
            "rack.yaml:4: torch_spec: expected a non-empty string, got a list",
        ),
        (
            "pip_index_url: pypi.example.com/simple",
            "rack.yaml:4: pip_index_url: expected an http(s):// or file:// URL, "
            "got 'pypi.example.com/simple'",
        ),
        (
            "pip_extra_args: {timeout: 60}",
            "rack.yaml:4: pip_extra_args: expected a list of strings or one string of "
            "arguments, got a mapping",
        ),
        (
            'pip_extra_args: "--index-url \'unclosed"',
            "rack.yaml:4: pip_extra_args: cannot be split into arguments: No closing quotation",
        ),
    ],
)
def test_bad_values_are_one_line_with_file_line_and_key(
    in_tmp: Path, line: str, message: str
) -> None:
    found = load_error(in_tmp, f"all:\n  hosts:\n    gpu1:\n      {line}\n")
    if message.endswith(": "):  # packaging's own words follow, which vary by its version
        assert found.startswith(message) and len(found) > len(message)
    else:
        assert found == message


def test_node_paths_are_kept_normalised(in_tmp: Path) -> None:
    line = "{runtime_venv: //srv//venv/, wheelhouse: /srv/wheels/, scratch_dir: /scratch//}"
    host = load(in_tmp, f"all:\n  hosts:\n    gpu1: {line}\n").host("gpu1")
    assert (host.runtime_venv, host.wheelhouse, host.scratch_dir) == (
        "/srv/venv", "/srv/wheels", "/scratch",
    )  # fmt: skip


@pytest.mark.parametrize(
    "spec", ["torch==2.4.1", "torch>=2.2,<3", "torch[opt]~=2.4; python_version >= '3.9'"]
)
def test_torch_spec_is_any_pip_requirement(in_tmp: Path, spec: str) -> None:
    host = load(in_tmp, f'all:\n  hosts:\n    gpu1: {{torch_spec: "{spec}"}}\n').host("gpu1")
    assert host.torch_spec == spec


def test_provision_python_makes_the_venv_and_is_no_choice_of_python(in_tmp: Path) -> None:
    inventory = load(
        in_tmp,
        """
        all:
          vars: {provision_python: /usr/bin/python3.11}
          hosts:
            gpu1:
            gpu2: {provision_python: ~}
        """,
    )
    gpu1, gpu2 = inventory.host("gpu1"), inventory.host("gpu2")
    assert gpu1.provision_python == "/usr/bin/python3.11" and gpu1.python_set is False
    assert gpu1.python == "python3"  # bench and certify: the recorded venv's, else this
    assert gpu2.provision_python is None


def test_an_empty_argument_in_the_list_names_its_line(in_tmp: Path) -> None:
    message = load_error(
        in_tmp,
        """
        all:
          vars:
            pip_extra_args:
              - --no-cache-dir
              - ""
          hosts: {gpu1: }
        """,
    )
    assert message == "rack.yaml:5: pip_extra_args: expected non-empty strings, got an empty one"


def test_a_template_spoils_provision_for_the_host_but_not_check(in_tmp: Path) -> None:
    """Another tool's role may own a `wheelhouse: "{{ playbook_dir }}/wheels"`: the host
    stays usable for check and bench; only provision refuses it, naming file, line and key."""
    inventory = load(
        in_tmp,
        """
        all:
          hosts:
            gpu1:
              wheelhouse: "{{ playbook_dir }}/wheels"
            gpu2:
              pip_extra_args: [--no-cache-dir, "{{ extra }}"]
            gpu3:
        """,
    )
    gpu1, gpu2, gpu3 = (inventory.host(name) for name in ("gpu1", "gpu2", "gpu3"))
    assert gpu1.unusable is None and gpu2.unusable is None
    assert gpu1.provision_unusable == (
        "rack.yaml:4: wheelhouse: Jinja templates are not supported; write the value out"
    )
    assert gpu1.wheelhouse is None
    assert gpu2.provision_unusable is not None
    assert gpu2.provision_unusable.startswith("rack.yaml:6: pip_extra_args: Jinja")
    assert gpu3.provision_unusable is None


def test_a_near_miss_of_a_provision_variable_is_a_warning(in_tmp: Path) -> None:
    inventory = load(in_tmp, "all:\n  hosts:\n    gpu1: {wheelhose: /srv/wheels}\n")
    assert inventory.warnings == (
        "rack.yaml:3: wheelhose: unknown variable, ignored; did you mean 'wheelhouse'?",
    )


def test_example_rack_shows_every_provision_variable() -> None:
    inventory = load_inventory(str(REPO_ROOT / "inventories" / "example-rack.yaml"), env={})
    compute = inventory.host("gpu001.rack1.example.com")
    assert compute.runtime_venv == "/opt/dcctl/venv"
    assert compute.torch_spec is not None
    assert compute.pip_index_url is not None
    assert compute.pip_extra_args
    assert compute.provision_python is not None and compute.python_set
    storage = inventory.host("stor01.rack1.example.com")
    assert storage.wheelhouse is not None
