"""Node entry point: payload framing, exit codes, probe isolation, and the runtime end to end."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest

from dcctl.node import facts as facts_module
from dcctl.node.facts import Probe, TaskParamsError, collect_facts
from dcctl.node.main import main
from dcctl.node.payload import (
    PAYLOAD_END,
    PAYLOAD_START,
    BadPayload,
    format_payload,
    format_progress,
    parse_progress_line,
    read_payload,
)

REPO = Path(__file__).resolve().parent.parent.parent
SYSROOTS = REPO / "tests" / "fixtures" / "sysroots"
FACT_KEYS = {
    "os", "kernel", "cpu", "memory", "swap", "uptime_s", "python", "driver", "cuda", "gpus",
    "gpu_source", "torch", "fio", "mounts", "scratch", "ib", "nvme", "kernel_log", "modules",
    "nvswitch_count", "fabric_manager", "versions",
}  # fmt: skip
# Filled only when the controller asks for a DCGM level (check --dcgm N).
ON_REQUEST_KEYS = {"dcgm"}


def run_main(argv: list[str], **kwargs: Any) -> tuple[int, str]:
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(argv, **kwargs)
    return code, out.getvalue()


# --- payload framing -----------------------------------------------------------------------


def test_format_payload_is_one_line_with_markers() -> None:
    text = format_payload({"a": [1, 2], "b": "x\ny"})
    assert text.endswith("\n")
    assert text.count("\n") == 1
    assert text.startswith(PAYLOAD_START)
    assert text.rstrip("\n").endswith(PAYLOAD_END)


def test_read_payload_ignores_banners_and_noise() -> None:
    stdout = (
        "Welcome to Ubuntu 22.04.4 LTS (GNU/Linux 5.15.0-101-generic x86_64)\n"
        " * Documentation:  https://help.ubuntu.com\n"
        "Last login: Tue Mar  5 22:23:56 2024 from 10.0.0.1\n"
        + format_progress({"step": 1, "of": 3})
        + "UserWarning: something from a library\n"
        + format_payload({"kernel": "5.15.0-101-generic"})
        + "logout\n"
    )
    assert read_payload(stdout) == {"kernel": "5.15.0-101-generic"}


def test_read_payload_takes_the_last_complete_pair() -> None:
    stdout = (
        format_payload({"n": 1})
        + format_payload({"n": 2})
        + PAYLOAD_START
        + '{"n": 3'  # cut off: the node died mid-write
    )
    assert read_payload(stdout) == {"n": 2}


def test_read_payload_none_when_absent() -> None:
    assert read_payload("") is None
    assert read_payload("bash: python3: command not found\n") is None


@pytest.mark.parametrize(
    "stdout",
    [
        f"{PAYLOAD_START}not json{PAYLOAD_END}",
        f"{PAYLOAD_START}[1, 2]{PAYLOAD_END}",
        f"{PAYLOAD_END}{PAYLOAD_START}",
    ],
)
def test_read_payload_raises_when_corrupt(stdout: str) -> None:
    with pytest.raises(BadPayload):
        read_payload(stdout)


def test_markers_inside_values_cannot_end_the_frame() -> None:
    value = {"error": f"odd {PAYLOAD_END} text {PAYLOAD_START} here", "k": "<b>"}
    text = "banner\n" + format_payload(value) + "trailer\n"
    assert text.count(PAYLOAD_END) == 1
    assert read_payload(text) == value


def test_progress_line_roundtrip() -> None:
    line = format_progress({"step": 120, "of": 300})
    assert parse_progress_line(line) == {"step": 120, "of": 300}
    assert parse_progress_line("plain noise") is None


# --- main: exit codes ----------------------------------------------------------------------


def test_unknown_task_exits_2() -> None:
    code, out = run_main(["bogus", "{}"])
    assert code == 2
    payload = read_payload(out)
    assert payload is not None
    assert "unknown task 'bogus'" in payload["error"]
    assert "facts" in payload["error"]


@pytest.mark.parametrize("params", ["{not json", "[1, 2]", '"text"'])
def test_bad_params_exit_2(params: str) -> None:
    code, out = run_main(["facts", params])
    assert code == 2
    payload = read_payload(out)
    assert payload is not None
    assert "params" in payload["error"]


def test_missing_task_exits_2() -> None:
    code, out = run_main([])
    assert code == 2
    assert "usage" in (read_payload(out) or {})["error"]


def test_invalid_scratch_dir_exits_2() -> None:
    code, out = run_main(["facts", '{"scratch_dir": "relative/path"}'])
    assert code == 2
    assert "scratch_dir" in (read_payload(out) or {})["error"]


def test_task_exception_exits_1_with_traceback() -> None:
    def broken(params: dict[str, Any]) -> dict[str, Any]:
        raise KeyError("boom")

    code, out = run_main(["broken", "{}"], tasks={"broken": broken})
    assert code == 1
    payload = read_payload(out)
    assert payload is not None
    assert payload["error"] == "KeyError: 'boom'"
    assert "Traceback" in payload["traceback"]
    assert "broken" in payload["traceback"]


def test_task_params_error_exits_2() -> None:
    def picky(params: dict[str, Any]) -> dict[str, Any]:
        raise TaskParamsError("size must be positive")

    code, out = run_main(["picky", "{}"], tasks={"picky": picky})
    assert code == 2
    assert (read_payload(out) or {})["error"] == "bad params for picky: size must be positive"


def test_exactly_one_payload_line_on_stdout() -> None:
    code, out = run_main(["facts", "{}"])
    assert code == 0
    assert out.count(PAYLOAD_START) == 1
    assert out.count("\n") == 1


# --- facts: probe isolation ----------------------------------------------------------------


def test_failing_probe_is_isolated() -> None:
    def explode(params: dict[str, Any]) -> dict[str, Any]:
        raise PermissionError("[Errno 13] Permission denied: '/proc/cpuinfo'")

    probes = (
        Probe("kernel", ("kernel",), lambda p: {"kernel": "6.1.0"}),
        Probe("cpu", ("cpu",), explode),
        Probe("memory", ("memory", "swap"), lambda p: {"memory": {"total_gb": 1.0}, "swap": None}),
    )
    facts = collect_facts({"scratch_dir": "/tmp"}, probes)
    assert facts["kernel"] == "6.1.0"
    assert facts["memory"] == {"total_gb": 1.0}
    assert facts["cpu"] is None
    assert facts["probe_errors"] == {
        "cpu": "PermissionError: [Errno 13] Permission denied: '/proc/cpuinfo'"
    }


def test_probe_can_report_a_fallback_error() -> None:
    probes = (
        Probe(
            "gpu",
            ("driver",),
            lambda p: {"driver": "550.54.15", "probe_errors": {"nvml": "NVMLError: Unknown"}},
        ),
    )
    assert collect_facts({}, probes) == {
        "driver": "550.54.15",
        "probe_errors": {"nvml": "NVMLError: Unknown"},
    }


def test_no_probe_errors_key_when_all_succeed() -> None:
    probes = (Probe("kernel", ("kernel",), lambda p: {"kernel": "6.1.0"}),)
    assert collect_facts({}, probes) == {"kernel": "6.1.0"}


def test_probe_table_covers_the_schema() -> None:
    keys = {key for probe in facts_module.PROBES for key in probe.keys}
    assert keys == FACT_KEYS | ON_REQUEST_KEYS
    assert len({probe.name for probe in facts_module.PROBES}) == len(facts_module.PROBES)


# --- end to end: python -m dcctl.node with DCCTL_SYSROOT ------------------------------------


def run_node(
    args: list[str], sysroot: Path | None = None, python: str = sys.executable
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DCCTL_SYSROOT"}
    env["PYTHONPATH"] = str(REPO)
    if sysroot is not None:
        env["DCCTL_SYSROOT"] = str(sysroot)
    return subprocess.run(
        [python, "-m", "dcctl.node", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
        check=False,
    )


def facts_from(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    payload = read_payload(proc.stdout)
    assert payload is not None, proc.stdout
    return payload


def test_sysroot_healthy_h100_end_to_end() -> None:
    facts = facts_from(
        run_node(["facts", '{"scratch_dir": "/var/tmp/dcctl"}'], SYSROOTS / "healthy-h100")
    )
    assert set(facts) >= FACT_KEYS
    assert "probe_errors" not in facts
    assert facts["os"]["pretty_name"] == "Ubuntu 22.04.4 LTS"
    assert facts["kernel"] == "5.15.0-101-generic"
    assert facts["cpu"] == {
        "model": "Intel(R) Xeon(R) Platinum 8480C",
        "sockets": 2,
        "cores": 112,
        "threads": 224,
    }
    assert facts["memory"]["total_gb"] == 2015.5
    assert facts["swap"]["total_gb"] == 0.0
    assert facts["uptime_s"] == 1834567.42
    assert facts["driver"] == "550.54.15"
    assert facts["gpu_source"] == "nvml"  # the tree's dcctl-recorded/nvml.json
    assert facts["cuda"] == "12.4"
    assert len(facts["gpus"]) == 8
    assert {g["name"] for g in facts["gpus"]} == {"NVIDIA H100 80GB HBM3"}
    data = next(m for m in facts["mounts"] if m["mountpoint"] == "/data")
    assert (data["device"], data["fstype"], data["options"][0]) == (
        "10.0.0.5:/export/data",
        "nfs4",
        "rw",
    )
    assert [p["rate_gbps"] for p in facts["ib"] if p["link_layer"] == "InfiniBand"] == [400] * 8
    # The sysroot has /var/tmp but no /var/tmp/dcctl.
    assert facts["scratch"]["path"] == "/var/tmp/dcctl"
    assert facts["scratch"]["exists"] is False
    assert facts["python"] == ".".join(str(n) for n in sys.version_info[:3])


def test_sysroot_no_gpu_end_to_end() -> None:
    facts = facts_from(run_node(["facts", "{}"], SYSROOTS / "no-gpu"))
    assert facts["os"]["id"] == "debian"
    assert facts["kernel"] == "6.1.0-18-amd64"
    assert facts["driver"] is None
    assert facts["cuda"] is None
    assert facts["gpus"] == []
    assert facts["gpu_source"] == "none"
    assert facts["ib"] == []
    assert facts["swap"] == {"total_gb": 8.0, "used_gb": 2.1}


def test_sysroot_partial_recording_end_to_end() -> None:
    facts = facts_from(run_node(["facts", "{}"], SYSROOTS / "ib-degraded"))
    assert "probe_errors" not in facts
    assert facts["cpu"] is None
    assert facts["memory"] is None
    assert facts["mounts"] is None
    states = {p["device"]: (p["state"], p["rate_gbps"]) for p in facts["ib"]}
    assert states["mlx5_3"] == ("DOWN", 10)
    assert states["mlx5_5"] == ("ACTIVE", 200)


def test_subprocess_exit_codes() -> None:
    proc = run_node(["nope"])
    assert proc.returncode == 2
    assert "unknown task" in (read_payload(proc.stdout) or {})["error"]
    proc = run_node(["facts", "{oops"])
    assert proc.returncode == 2


def test_live_facts_are_fast() -> None:
    run_node(["facts", "{}"])  # warm the page cache and bytecode
    started = time.monotonic()
    facts = facts_from(run_node(["facts", "{}"]))
    elapsed = time.monotonic() - started
    assert set(facts) >= FACT_KEYS
    if facts["gpu_source"] == "none":
        # No driver: nothing may import torch or NVML. The brief's budget is 1 s; leave slack
        # for a loaded CI machine.
        assert elapsed < 3.0, f"facts took {elapsed:.2f} s"


# --- the shipped form: a zipapp with only dcctl/__init__.py and dcctl/node -----------------


def build_zipapp(path: Path) -> Path:
    node_dir = REPO / "dcctl" / "node"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("__main__.py", "import sys\nfrom dcctl.node.main import main\n"
                         "sys.exit(main())\n")  # fmt: skip
        archive.writestr("dcctl/__init__.py", "")
        for source in sorted(node_dir.rglob("*.py")):
            archive.write(source, source.relative_to(REPO).as_posix())
    return path


def _is_python38(candidate: str | None) -> bool:
    if candidate is None:
        return False
    check = "import sys; sys.exit(sys.version_info[:2] != (3, 8))"
    return (
        subprocess.run([candidate, "-c", check], capture_output=True, check=False).returncode == 0
    )


def interpreters() -> list[str]:
    """This interpreter plus a working Python 3.8 (the oldest the node runtime supports)."""
    candidates = [
        shutil.which("python3.8"),
        *sorted(str(p) for p in Path.home().glob(".pyenv/versions/3.8*/bin/python")),
    ]
    oldest = next((c for c in candidates if c is not None and _is_python38(c)), None)
    return [sys.executable] if oldest is None else [sys.executable, oldest]


@pytest.mark.parametrize("python", interpreters())
@pytest.mark.parametrize(("sysroot", "threads"), [("no-gpu", 32), ("healthy-h100", 224)])
def test_zipapp_runs_with_stdlib_only(
    tmp_path: Path, python: str, sysroot: str, threads: int
) -> None:
    pyz = build_zipapp(tmp_path / "runtime.pyz")
    env = {k: v for k, v in os.environ.items() if k not in ("DCCTL_SYSROOT", "PYTHONPATH")}
    env["DCCTL_SYSROOT"] = str(SYSROOTS / sysroot)
    proc = subprocess.run(
        [python, "-I", str(pyz), "facts", json.dumps({"scratch_dir": str(tmp_path)})],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    facts = facts_from(proc)
    assert "probe_errors" not in facts, facts.get("probe_errors")
    assert facts["cpu"]["threads"] == threads
    assert set(facts) >= FACT_KEYS


@pytest.mark.parametrize("sysroot", [None, SYSROOTS / "healthy-h100"])
def test_facts_task_reports_torch_without_importing_it(
    tmp_path: Path, sysroot: Path | None
) -> None:
    """`check` stays about a second of node time: torch's version is read from its files, and
    neither the task nor a child of it imports torch (a fake torch here records any import)."""
    package = tmp_path / "site" / "torch"
    package.mkdir(parents=True)
    marker = tmp_path / "imported"
    (package / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    (package / "version.py").write_text("__version__ = '9.9.9+fake'\n")
    env = {k: v for k, v in os.environ.items() if k != "DCCTL_SYSROOT"}
    env["PYTHONPATH"] = f"{REPO}{os.pathsep}{tmp_path / 'site'}"
    if sysroot is not None:
        env["DCCTL_SYSROOT"] = str(sysroot)
    proc = subprocess.run(
        [sys.executable, "-S", "-m", "dcctl.node", "facts", "{}"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=120, check=False,
    )  # fmt: skip
    assert facts_from(proc)["torch"] == {"version": "9.9.9+fake"}
    assert not marker.exists()
