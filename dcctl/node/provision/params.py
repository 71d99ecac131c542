"""The task's parameters, checked before anything runs: a bad type is one TaskParamsError."""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from dcctl.node.facts import DEFAULT_SCRATCH_DIR, TaskParamsError

DEFAULT_VENV = "/opt/dcctl/venv"
DEFAULT_TORCH_SPEC = "torch>=2.2,<3"
DEFAULT_PACKAGES = ("nvidia-ml-py",)
DEFAULT_TORCH_INDEX_BASE = "https://download.pytorch.org/whl"
_DIGEST_RE = re.compile(r"[0-9a-f]{16}")


class Params(NamedTuple):
    check: bool
    become: bool
    venv: str
    torch_spec: str
    packages: list[str]
    pip_index_url: str | None
    pip_extra_args: list[str]
    wheelhouse: str | None
    torch_index_base: str
    scratch_dir: str
    prune: bool
    keep_runtime: str | None
    python: str | None  # provision_python: what makes the venv; None: the one running this


def _flag(raw: dict[str, Any], key: str) -> bool:
    value = raw.get(key, False)
    if not isinstance(value, bool):
        raise TaskParamsError(f"{key} must be true or false, got {value!r}")
    return value


def _absolute(raw: dict[str, Any], key: str, default: str | None) -> str | None:
    """A normalised absolute directory: no `.` or `..` parts (the inventory refuses them
    too), never / (nor //), duplicate and trailing slashes dropped."""
    value = raw.get(key, default)
    if value is None:
        return None
    named = [part for part in value.split("/") if part] if isinstance(value, str) else []
    if not named or not value.startswith("/") or "." in named or ".." in named:
        raise TaskParamsError(
            f"{key} must be an absolute path other than /, without . or .. parts, got {value!r}"
        )
    return "/" + "/".join(named)


def _requirement(key: str, value: Any) -> str:
    # A leading "-" would reach pip as an option, not a requirement.
    if not isinstance(value, str) or not value.strip() or value.strip().startswith("-"):
        raise TaskParamsError(
            f"{key} must be a pip requirement such as 'torch>=2.2', got {value!r}"
        )
    return value.strip()


def _text(raw: dict[str, Any], key: str, default: str | None) -> str | None:
    value = raw.get(key, default)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or value.strip().startswith("-"):
        raise TaskParamsError(f"{key} must be a non-empty string, got {value!r}")
    return value.strip()


def _strings(raw: dict[str, Any], key: str, default: list[str]) -> list[str]:
    value = raw.get(key, default)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise TaskParamsError(f"{key} must be a list of strings, got {value!r}")
    return list(value)


def parse_params(raw: dict[str, Any]) -> Params:
    """Params from the controller's JSON; unknown keys are ignored."""
    torch_spec = raw.get("torch_spec")
    keep_runtime = raw.get("keep_runtime")
    if keep_runtime is not None and not (
        isinstance(keep_runtime, str) and _DIGEST_RE.fullmatch(keep_runtime)
    ):
        raise TaskParamsError(f"keep_runtime must be 16 hex digits, got {keep_runtime!r}")
    venv = _absolute(raw, "venv", DEFAULT_VENV)
    scratch_dir = _absolute(raw, "scratch_dir", DEFAULT_SCRATCH_DIR)
    assert venv is not None and scratch_dir is not None  # they have defaults
    torch_index_base = _text(raw, "torch_index_base", DEFAULT_TORCH_INDEX_BASE)
    assert torch_index_base is not None
    spec = DEFAULT_TORCH_SPEC if torch_spec is None else _requirement("torch_spec", torch_spec)
    return Params(
        check=_flag(raw, "check"),
        become=_flag(raw, "become"),
        venv=venv,
        torch_spec=spec,
        packages=[
            _requirement("packages", item)
            for item in _strings(raw, "packages", list(DEFAULT_PACKAGES))
        ],
        pip_index_url=_text(raw, "pip_index_url", None),
        pip_extra_args=_strings(raw, "pip_extra_args", []),
        wheelhouse=_absolute(raw, "wheelhouse", None),
        torch_index_base=torch_index_base.rstrip("/"),
        scratch_dir=scratch_dir,
        prune=_flag(raw, "prune"),
        keep_runtime=keep_runtime,
        python=_text(raw, "python", None),
    )
