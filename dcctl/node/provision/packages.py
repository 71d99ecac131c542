"""The `packages` step: torch (the host's spec) and the other packages in the venv.

"Satisfied" is decided offline, inside the venv: importlib.metadata says what is installed
and the requirement parser pip vendors (pip._vendor.packaging) reads the requirements, their
markers evaluated for the venv's Python. Nothing is downloaded or built to decide it, so
`--check` never touches the network; only a real run with something unmet runs pip install.
Dependencies of the requirements are pip's business when it installs them.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from dcctl.node.provision.commands import Outcome, run_command
from dcctl.node.provision.params import Params
from dcctl.node.provision.privilege import Privilege
from dcctl.node.provision.result import step
from dcctl.node.provision.torch_build import BuildChoice
from dcctl.node.provision.venv import VenvState

INSTALL_TIMEOUT_S = 3600.0  # torch's CUDA wheels are GiBs through a site's proxy
METADATA_TIMEOUT_S = 60.0
# Never a question, never a "new pip available" line in the output kept.
PIP_QUIET_FLAGS = ["--disable-pip-version-check", "--no-input"]

# Runs in the venv's Python (its argv: the requirements): {"unmet": [...]} or {"invalid": ...}.
# A requirement whose marker is false for this Python is not needed; one with a URL is met
# by any installed version of its name.
UNMET_PY = """
import json, sys
from importlib import metadata
try:
    from pip._vendor.packaging.requirements import InvalidRequirement, Requirement
except ImportError:
    from packaging.requirements import InvalidRequirement, Requirement
def installed(name):
    for candidate in (name, name.replace("-", "_"), name.replace("_", "-")):
        try:
            return metadata.version(candidate)
        except metadata.PackageNotFoundError:
            continue
    return None
unmet = []
for text in sys.argv[1:]:
    try:
        req = Requirement(text)
    except InvalidRequirement as exc:
        why = (str(exc).splitlines() or ["invalid"])[0]
        print(json.dumps({"invalid": "%s is not a pip requirement: %s" % (text, why)}))
        sys.exit(0)
    if req.marker is not None and not req.marker.evaluate():
        continue
    version = installed(req.name)
    if version is None:
        unmet.append(text)
    elif req.url is None and not req.specifier.contains(version, prereleases=True):
        unmet.append("%s (%s installed)" % (text, version))
print(json.dumps({"unmet": unmet}))
"""


def requirements(params: Params) -> list[str]:
    return [params.torch_spec, *params.packages]


def index_args(params: Params, choice: BuildChoice) -> tuple[list[str] | None, str]:
    """pip's index arguments and a line saying where packages come from.

    None when there is no index to use (no build for this driver: the line says why).
    """
    if params.wheelhouse is not None:
        return ["--no-index", "--find-links", params.wheelhouse], f"from {params.wheelhouse}"
    if params.pip_index_url is not None:
        return ["--index-url", params.pip_index_url], f"from {params.pip_index_url}"
    if choice.build is None:
        return None, choice.reason
    url = f"{params.torch_index_base}/{choice.build}"
    return ["--extra-index-url", url], f"torch build {choice.build}: {choice.reason}"


def install_argv(python: str, params: Params, index: list[str], *options: str) -> list[str]:
    return [
        python,
        "-m",
        "pip",
        "install",
        *PIP_QUIET_FLAGS,
        *options,
        *index,
        *params.pip_extra_args,
        *requirements(params),
    ]


class Unmet(NamedTuple):
    """The venv's answer: what it lacks, or why there is no answer (one line)."""

    missing: list[str] | None  # None: no answer
    outcome: Outcome
    problem: str | None = None  # a requirement is no pip requirement (the whole line)


def to_install(state: VenvState, params: Params) -> Unmet:
    """The requirements the venv does not meet. Runs only the venv's python, offline."""
    argv = [state.python, "-I", "-c", UNMET_PY, *requirements(params)]
    outcome = run_command(argv, METADATA_TIMEOUT_S, keep_stdout=True)
    if not outcome.ok:
        return Unmet(None, outcome)
    try:
        answer = json.loads(outcome.stdout)
    except ValueError:
        answer = None
    if isinstance(answer, dict) and isinstance(answer.get("invalid"), str):
        return Unmet(None, outcome, answer["invalid"])
    unmet = answer.get("unmet") if isinstance(answer, dict) else None
    if not isinstance(unmet, list):
        return Unmet(None, outcome._replace(error="the requirement check printed no answer"))
    return Unmet([str(item) for item in unmet], outcome)


def packages_step(
    params: Params, state: VenvState, choice: BuildChoice, privilege: Privilege
) -> dict[str, Any]:
    wanted = " ".join(requirements(params))
    if not (state.usable or state.would_create):
        return step("packages", "skipped", "no usable venv (see venv)")
    index, source = index_args(params, choice)
    if state.would_create:
        if index is None:
            return step("packages", "failed", f"cannot choose torch's build: {source}")
        # The venv step already refused when root is needed and cannot be had.
        argv = install_argv(state.python, params, index)
        argv = privilege.argv(argv) if state.as_root else argv
        return step("packages", "changed", f"would install {wanted} ({source})", [argv])
    # Asked as this user, even when the install needs root: the question writes nothing.
    unmet = to_install(state, params)
    asked = unmet.outcome.argv
    if unmet.problem is not None:
        return step("packages", "failed", unmet.problem, [asked])
    if unmet.missing is None:
        why = unmet.outcome.why()
        return step("packages", "failed", f"checking {wanted} failed: {why}", [asked])
    if not unmet.missing:
        return step("packages", "ok", f"{wanted} already installed in {params.venv}", [asked])
    missing = " ".join(unmet.missing)
    if index is None:
        return step("packages", "failed", f"cannot choose torch's build: {source}", [asked])
    argv = install_argv(state.python, params, index)
    if state.as_root:
        if not privilege.usable:
            what = f"installing {missing} into {params.venv}"
            return privilege.refused("packages", what, [asked, argv])
        argv = privilege.argv(argv)
    if params.check:
        return step("packages", "changed", f"would install {missing} ({source})", [asked, argv])
    outcome = run_command(argv, INSTALL_TIMEOUT_S)
    if not outcome.ok:
        return step("packages", "failed", f"pip install failed: {outcome.why()}", [asked, argv])
    return step("packages", "changed", f"installed {missing} ({source})", [asked, argv])
