"""Entry point on the node: `python runtime.pyz <task> '<json-params>'`.

Prints exactly one payload line. Exits EXIT_OK when the task ran (findings are in the payload),
EXIT_BAD_REQUEST for an unusable request, EXIT_BROKEN when the runtime itself broke.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dcctl.node.facts import TaskParamsError, facts_task
from dcctl.node.payload import EXIT_BAD_REQUEST, EXIT_BROKEN, EXIT_OK, format_payload
from dcctl.node.watchdog import start_if_requested

if TYPE_CHECKING:
    from collections.abc import Callable

    # Only for the checker: subscripted generics do not exist at runtime on Python 3.8.
    Task = Callable[[dict[str, Any]], dict[str, Any]]


def _bench_task(params: dict[str, Any]) -> dict[str, Any]:
    # Imported on use: `check` (the facts task) never loads the benchmark modules.
    from dcctl.node.bench.task import bench_task

    return bench_task(params)


def _gang_preflight_task(params: dict[str, Any]) -> dict[str, Any]:
    from dcctl.node.bench.gang import preflight_task

    return preflight_task(params)


def _gang_task(params: dict[str, Any]) -> dict[str, Any]:
    from dcctl.node.bench.gang import gang_task

    return gang_task(params)


def _provision_task(params: dict[str, Any]) -> dict[str, Any]:
    from dcctl.node.provision.task import provision_task

    return provision_task(params)


TASKS: Mapping[str, Task] = {
    "facts": facts_task,
    "bench": _bench_task,
    "gang_preflight": _gang_preflight_task,
    "gang": _gang_task,
    "provision": _provision_task,
}


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(format_payload(obj))
    sys.stdout.flush()


def _bad_request(message: str) -> int:
    _emit({"error": message})
    return EXIT_BAD_REQUEST


def main(argv: list[str] | None = None, tasks: Mapping[str, Task] | None = None) -> int:
    """Run one task and print its payload; returns the exit status."""
    args = sys.argv[1:] if argv is None else argv
    table = TASKS if tasks is None else tasks
    if len(args) not in (1, 2):
        return _bad_request("usage: runtime.pyz <task> ['<json-params>']")
    name = args[0]
    task = table.get(name)
    if task is None:
        return _bad_request(f"unknown task {name!r} (known: {', '.join(sorted(table))})")
    try:
        params = json.loads(args[1]) if len(args) == 2 else {}
    except ValueError as exc:
        return _bad_request(f"params are not valid JSON: {exc}")
    if not isinstance(params, dict):
        return _bad_request(f"params must be a JSON object, got {type(params).__name__}")
    start_if_requested()
    try:
        result = task(params)
    except TaskParamsError as exc:
        return _bad_request(f"bad params for {name}: {exc}")
    except Exception as exc:  # the runtime broke: report it in the payload, not as noise
        import traceback  # only on this path: every task on every node would pay for it

        _emit({"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()})
        return EXIT_BROKEN
    _emit(result)
    return EXIT_OK
