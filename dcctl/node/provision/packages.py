"""The `packages` step: torch (the host's spec) and the other packages in the venv.

pip itself says whether they are installed already (`--dry-run --report`, pip >= 22.2), so
"satisfied" means what the install would do, dependencies included; an older pip in the venv
is asked through importlib.metadata instead, for the requirements themselves only.
"""

from __future__ import annotations

import json
from typing import Any

from dcctl.node.provision.commands import Outcome, run_command
from dcctl.node.provision.params import Params
from dcctl.node.provision.privilege import Privilege
from dcctl.node.provision.result import step
from dcctl.node.provision.torch_build import BuildChoice
from dcctl.node.provision.venv import VenvState

INSTALL_TIMEOUT_S = 3600.0  # torch's CUDA wheels are GiBs through a site's proxy
DRY_RUN_TIMEOUT_S = 600.0
METADATA_TIMEOUT_S = 60.0
PIP_REPORT = (22, 2)  # the first pip with --dry-run and --report
# Never a question, never a "new pip available" line in the output kept.
PIP_QUIET_FLAGS = ["--disable-pip-version-check", "--no-input"]

# Runs in the venv's Python (>= 3.8 there): which requirements importlib.metadata finds unmet.
_UNMET_PY = """
import json, sys
from importlib import metadata
try:
    from packaging.requirements import Requirement
except ImportError:
    from pip._vendor.packaging.requirements import Requirement
unmet = []
for text in sys.argv[1:]:
    req = Requirement(text)
    try:
        version = metadata.version(req.name)
    except metadata.PackageNotFoundError:
        unmet.append(text)
        continue
    if not req.specifier.contains(version, prereleases=True):
        unmet.append("%s (%s installed)" % (text, version))
print(json.dumps(unmet))
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


def parse_report(text: str) -> list[str]:
    """ "name==version" for each distribution pip's JSON report would install."""
    report = json.loads(text)
    found = []
    for item in report.get("install", []):
        meta = item.get("metadata", {})
        found.append(f"{meta.get('name', '?')}=={meta.get('version', '?')}")
    return found


def _to_install(
    state: VenvState, params: Params, index: list[str]
) -> tuple[list[str] | None, Outcome]:
    """What the install would add (None: the question failed; the outcome says why)."""
    if state.pip is not None and state.pip >= PIP_REPORT:
        argv = install_argv(state.python, params, index, "--dry-run", "--quiet", "--report", "-")
        outcome = run_command(argv, DRY_RUN_TIMEOUT_S, keep_stdout=True)
        if not outcome.ok:
            return None, outcome
        try:
            return parse_report(outcome.stdout), outcome
        except (ValueError, AttributeError) as exc:
            return None, outcome._replace(error=f"pip's --report is not a JSON report: {exc}")
    argv = [state.python, "-c", _UNMET_PY, *requirements(params)]
    outcome = run_command(argv, METADATA_TIMEOUT_S, keep_stdout=True)
    if not outcome.ok:
        return None, outcome
    try:
        return list(json.loads(outcome.stdout)), outcome
    except ValueError as exc:
        return None, outcome._replace(error=f"the requirement check printed no list: {exc}")


def packages_step(
    params: Params, state: VenvState, choice: BuildChoice, privilege: Privilege
) -> dict[str, Any]:
    wanted = " ".join(requirements(params))
    if not (state.usable or state.would_create):
        return step("packages", "skipped", "no usable venv (see venv)")
    index, source = index_args(params, choice)
    if index is None:
        return step("packages", "failed", f"cannot choose torch's build: {source}")
    argv = install_argv(state.python, params, index)
    if state.would_create:
        # The venv step already refused when root is needed and cannot be had.
        argv = privilege.argv(argv) if state.as_root else argv
        return step("packages", "changed", f"would install {wanted} ({source})", [argv])
    # Asked as this user, even when the install needs root: the question writes nothing.
    missing, asked = _to_install(state, params, index)
    if missing is None:
        return step("packages", "failed", f"checking {wanted} failed: {asked.why()}", [asked.argv])
    if not missing:
        return step("packages", "ok", f"{wanted} already installed ({source})", [asked.argv])
    if state.as_root:
        if not privilege.usable:
            what = f"installing {' '.join(missing)} into {params.venv}"
            return privilege.refused("packages", what, [asked.argv, argv])
        argv = privilege.argv(argv)
    if params.check:
        return step(
            "packages",
            "changed",
            f"would install {' '.join(missing)} ({source})",
            [asked.argv, argv],
        )
    outcome = run_command(argv, INSTALL_TIMEOUT_S)
    if not outcome.ok:
        return step(
            "packages", "failed", f"pip install failed: {outcome.why()}", [asked.argv, argv]
        )
    return step(
        "packages", "changed", f"installed {' '.join(missing)} ({source})", [asked.argv, argv]
    )
