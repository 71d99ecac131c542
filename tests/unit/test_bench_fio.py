"""The fio parser on recorded real fio JSON (ours and other people's), the request checks, the
install hint and the evaluator. Sources of the recordings: tests/fixtures/bench/fio/README.md."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from dcctl.evaluate.bench_fio import evaluate_fio, threshold_keys
from dcctl.node.bench.fio import FioSection
from dcctl.node.bench.fio_env import install_command
from dcctl.node.bench.fio_parse import (
    FioReportError,
    decode_fio_output,
    parse_fio_json,
    parse_size,
    report_errors,
)
from dcctl.node.bench.fio_process import StopFlag, run_watched
from dcctl.node.bench.fio_request import (
    FILENAME_FORMAT,
    JOB_ORDER,
    BadParams,
    Request,
    fio_argv,
    read_params,
)
from dcctl.node.bench.fio_scratch import space_needed

FIXTURES = Path(__file__).parents[1] / "fixtures" / "bench" / "fio"
LOCAL = FIXTURES / "local"
REAL = FIXTURES / "real"


def raw_stats(path: Path, direction: str, job: int = 0) -> dict[str, Any]:
    """The job's read or write block exactly as fio wrote it."""
    stats: dict[str, Any] = decode_fio_output(path.read_text())["jobs"][job][direction]
    return stats


# --- our own recordings: one per dcctl job -------------------------------------------------

LOCAL_JOBS = [
    # name, direction, rw, bs, iodepth, numjobs
    ("seqread", "read", "read", 1048576, 32, 1),
    ("seqwrite", "write", "write", 1048576, 32, 1),
    ("randread", "read", "randread", 4096, 64, 4),
    ("randwrite", "write", "randwrite", 4096, 64, 4),
]


@pytest.mark.parametrize(("name", "direction", "rw", "bs", "iodepth", "numjobs"), LOCAL_JOBS)
def test_local_recordings_parse_to_fio_figures(
    name: str, direction: str, rw: str, bs: int, iodepth: int, numjobs: int
) -> None:
    path = LOCAL / f"{name}.json"
    raw = raw_stats(path, direction)

    [figures] = parse_fio_json(path.read_text())

    assert (figures["name"], figures["direction"], figures["rw"]) == (name, direction, rw)
    assert (figures["bs"], figures["iodepth"], figures["numjobs"]) == (bs, iodepth, numjobs)
    assert figures["error"] == 0
    # MB/s is fio's exact bytes per second over 10^6; its KiB/s `bw` says the same, to within
    # the KiB fio truncates it to and the 3 decimals the payload keeps.
    assert figures["mb_s"] == round(raw["bw_bytes"] / 1e6, 3)
    assert abs(raw["bw"] * 1024 - raw["bw_bytes"]) < 1024
    assert figures["mb_s"] == pytest.approx(raw["bw"] * 1024 / 1e6, abs=0.001024 + 0.0005)
    assert figures["iops"] == round(raw["iops"], 3)
    assert figures["runtime_s"] == raw["runtime"] / 1000
    percentile = raw["clat_ns"]["percentile"]
    assert figures["clat_us"] == {
        "p50": percentile["50.000000"] / 1000,
        "p99": percentile["99.000000"] / 1000,
        "p99.9": percentile["99.900000"] / 1000,
    }


def test_local_seqread_figures_by_hand() -> None:
    """bw_bytes 416571575 B/s = 416.572 MB/s; bw 406808 KiB/s * 1024 = 416.571 MB/s."""
    [figures] = parse_fio_json((LOCAL / "seqread.json").read_text())

    assert figures["mb_s"] == 416.572
    assert figures["iops"] == 382.181
    assert figures["clat_us"] == {"p50": 83361.792, "p99": 123207.68, "p99.9": 135266.304}
    assert figures["runtime_s"] == 2.054


# --- other people's recordings -------------------------------------------------------------

REAL_EXPECTED = {
    # fio-3.16 with bw_bytes: 6191502 B/s; clat_ns percentiles in ns.
    "fio-plot-3.16-libaio-randread.json": [
        {"name": "iotest", "direction": "read", "rw": "randread", "bs": 4096, "iodepth": 32,
         "numjobs": 32, "mb_s": 6.192, "bw_bytes": 6191502.0, "iops": 1511.597,
         "clat_us": {"p50": 775946.24, "p99": 1753219.072, "p99.9": 3137339.392},
         "runtime_s": 60.661, "error": 0},
    ],
    # fio-3.1 has no bw_bytes: 189458 KiB/s * 1024 = 194004992 B/s.
    "fio-plot-3.1-libaio-randread.json": [
        {"name": "random-read", "direction": "read", "rw": "randread", "bs": 4096,
         "iodepth": 16, "numjobs": 32, "mb_s": 194.005, "bw_bytes": 194004992.0,
         "iops": 47364.701, "clat_us": {"p50": 11206.656, "p99": 27131.904,
                                        "p99.9": 32374.784},
         "runtime_s": 60.008, "error": 0},
    ],
    # Stopped by Ctrl-C: fio's "terminating on signal 2" line precedes the JSON.
    "fio-plot-3.34-sync-randread-sigint.json": [
        {"name": "FIOJOB", "direction": "read", "rw": "randread", "bs": 4096, "iodepth": 1,
         "numjobs": 1, "mb_s": 41.38, "bw_bytes": 41380254.0, "iops": 10102.601,
         "clat_us": {"p50": 100.864, "p99": 175.104, "p99.9": 236.544},
         "runtime_s": 2.768, "error": 0},
    ],
    # fio 2.x: `clat` in µs; a read job and a write job in groups of their own.
    "perfkitbenchmarker-2.17-libaio-randrw.json": [
        {"name": "rand_16k_read_100%-io-depth-1-num-jobs-2", "direction": "read",
         "rw": "randread", "bs": 16384, "iodepth": 1, "numjobs": 2, "mb_s": 132.491,
         "bw_bytes": 132491264.0, "iops": 8086.674,
         "clat_us": {"p50": 96.0, "p99": 1352.0, "p99.9": 1896.0}, "runtime_s": 10.003,
         "error": 0},
        {"name": "rand_16k_write_100%-io-depth-1-num-jobs-2", "direction": "write",
         "rw": "randwrite", "bs": 16384, "iodepth": 1, "numjobs": 2, "mb_s": 40.255,
         "bw_bytes": 40255488.0, "iops": 2457.017,
         "clat_us": {"p50": 548.0, "p99": 2384.0, "p99.9": 5728.0}, "runtime_s": 10.004,
         "error": 0},
    ],
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(REAL_EXPECTED))
def test_other_peoples_fio_reports(name: str) -> None:
    assert parse_fio_json((REAL / name).read_text()) == REAL_EXPECTED[name]


@pytest.mark.parametrize(
    "name", ["fio-plot-3.16-libaio-randread.json", "fio-plot-3.34-sync-randread-sigint.json"]
)
def test_bw_and_bw_bytes_agree_in_other_peoples_reports(name: str) -> None:
    raw = raw_stats(REAL / name, "read")

    assert abs(raw["bw"] * 1024 - raw["bw_bytes"]) < 1024
    assert raw["bw_bytes"] == pytest.approx(raw["io_bytes"] / (raw["runtime"] / 1000), rel=0.01)


def test_kib_per_s_bw_matches_the_bytes_moved_where_bw_bytes_is_missing() -> None:
    """fio-3.1: 11641901056 bytes in 60.008 s is the 194.005 MB/s derived from `bw`."""
    raw = raw_stats(REAL / "fio-plot-3.1-libaio-randread.json", "read")
    [figures] = parse_fio_json((REAL / "fio-plot-3.1-libaio-randread.json").read_text())

    assert "bw_bytes" not in raw
    assert figures["mb_s"] == pytest.approx(raw["io_bytes"] / (raw["runtime"] / 1000) / 1e6, 1e-4)


def test_a_failed_job_has_no_figures_and_its_errno() -> None:
    text = (REAL / "fio-plot-3.33-einval.json").read_text()

    assert text.startswith("fio: time_based requires a runtime/timeout setting")
    assert parse_fio_json(text) == []
    assert report_errors(decode_fio_output(text)) == [("1m", 22)]


@pytest.mark.parametrize(
    "text",
    ["", "fio: engine libaio not loadable\n", '{"not": "fio"}\n', '{\n  "jobs" : [ {\n'],
)
def test_output_without_a_report_is_an_error(text: str) -> None:
    with pytest.raises(FioReportError):
        parse_fio_json(text)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("4k", 4096), ("4K", 4096), ("1M", 1048576), ("1m", 1048576), ("4096B", 4096),
     ("16KiB", 16384), ("1g", 1073741824), (4096, 4096), ("4k-16k", None), ("4k,8k", None),
     (None, None), (True, None)],
)  # fmt: skip
def test_fio_sizes(value: Any, expected: int | None) -> None:
    assert parse_size(value) == expected


# --- the request ---------------------------------------------------------------------------


def test_defaults_and_canonical_job_order() -> None:
    request = read_params({"scratch_dir": "/scratch", "jobs": ["randwrite", "seqread"]})

    assert request == Request("/scratch", 30.0, 2.0, 1024.0, ("seqread", "randwrite"))


def test_null_means_the_default() -> None:
    nulls = {"runtime_s": None, "ramp_s": None, "size_mb": None, "jobs": None}

    assert read_params({"scratch_dir": "/s", **nulls}) == Request(
        "/s", 30.0, 2.0, 1024.0, JOB_ORDER
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"scratch_dir": "/s", "filename": "/dev/sda"}, "fio parameter 'filename' is not"),
        ({"scratch_dir": "/s", "directory": "/dev"}, "fio parameter 'directory' is not"),
        ({}, "scratch_dir must be an absolute path, got None"),
        ({"scratch_dir": "relative"}, "scratch_dir must be an absolute path"),
        ({"scratch_dir": "/s", "runtime_s": 0}, "runtime_s must be a number >= 0.1, got 0"),
        ({"scratch_dir": "/s", "runtime_s": True}, "runtime_s must be a number"),
        ({"scratch_dir": "/s", "size_mb": "1G"}, "size_mb must be a number >= 1"),
        ({"scratch_dir": "/s", "ramp_s": -1}, "ramp_s must be a number >= 0"),
        ({"scratch_dir": "/s", "jobs": ["seqread", "mixed"]}, "unknown fio job 'mixed'"),
        ({"scratch_dir": "/s", "jobs": []}, "jobs must be a non-empty list"),
    ],
)
def test_bad_requests(params: dict[str, Any], message: str) -> None:
    with pytest.raises(BadParams, match="^" + message.replace("(", r"\(")):
        read_params(params)


def test_the_fio_command_is_built_from_numbers_and_generated_paths() -> None:
    request = Request("/scratch", 30.0, 2.0, 64.0, JOB_ORDER)

    argv = fio_argv("/usr/bin/fio", "randread", "/scratch/dcctl-fio-x1y2", request, True, "libaio")

    assert argv == [
        "/usr/bin/fio", "--output-format=json", "--output=/scratch/dcctl-fio-x1y2/randread.json",
        "--eta=never", "--name=randread", "--directory=/scratch/dcctl-fio-x1y2",
        f"--filename_format={FILENAME_FORMAT}", "--rw=randread", "--bs=4096", "--iodepth=64",
        "--numjobs=4", "--size=67108864", "--direct=1", "--ioengine=libaio", "--time_based",
        "--runtime=30000ms", "--ramp_time=2000ms", "--group_reporting",
    ]  # fmt: skip


def test_space_needed_is_the_largest_job_plus_margin() -> None:
    mib = 1024**2

    assert space_needed(1024, 4) == 4096 * mib + int(4096 * mib * 0.1)
    assert space_needed(4, 1) == 4 * mib + 16 * mib  # the margin's floor


@pytest.mark.parametrize(
    ("os_release", "command"),
    [
        ('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n', "apt-get install fio"),
        ('NAME="Ubuntu"\nID=ubuntu\nID_LIKE=debian\n', "apt-get install fio"),
        ('ID="rocky"\nID_LIKE="rhel centos fedora"\n', "dnf install fio"),
        ('ID="rhel"\nID_LIKE="fedora"\n', "dnf install fio"),
        ('ID="sles"\nID_LIKE="suse"\n', "zypper install fio"),
        ('ID="opensuse-leap"\nID_LIKE="suse opensuse"\n', "zypper install fio"),
        ('ID=pop\nID_LIKE="ubuntu debian"\n', "apt-get install fio"),
        ("ID=alpine\n", None),
        (None, None),
    ],
)
def test_install_command_per_distribution(os_release: str | None, command: str | None) -> None:
    assert install_command(os_release) == command


# --- the evaluator -------------------------------------------------------------------------


def section_from_recordings(**changes: Any) -> FioSection:
    """The section run_fio returns, built from our four recordings."""
    jobs = []
    for name, _direction, rw, bs, iodepth, numjobs in LOCAL_JOBS:
        [figures] = parse_fio_json((LOCAL / f"{name}.json").read_text())
        jobs.append(
            {"name": name, "rw": rw, "bs": bs, "iodepth": iodepth, "numjobs": numjobs,
             "direct": changes.get("direct", True), "mb_s": figures["mb_s"],
             "iops": figures["iops"], "clat_us": figures["clat_us"],
             "runtime_s": figures["runtime_s"]}
        )  # fmt: skip
    section: FioSection = {
        "fio_version": "fio-3.33", "ioengine": "libaio", "direct": changes.get("direct", True),
        "note": None, "directory": "/var/tmp/dcctl", "jobs": jobs,  # type: ignore[typeddict-item]
        "error": changes.get("error"),
    }  # fmt: skip
    return section


def test_figures_without_thresholds_pass_unjudged() -> None:
    results = evaluate_fio(section_from_recordings(), {})

    assert [r.id for r in results] == [f"bench.fio.{name}" for name in JOB_ORDER]
    assert {r.status for r in results} == {"pass"}
    assert {r.kind for r in results} == {"bench"}
    seqread = results[0]
    assert seqread.observed == {
        "mb_s": 416.572,
        "iops": 382.181,
        "clat_us": {"p50": 83361.792, "p99": 123207.68, "p99.9": 135266.304},
    }
    assert seqread.expected is None
    assert seqread.message == (
        "seqread (1 MiB, QD32, 1 job(s)): 416.6 MB/s, 382 IOPS, clat p50/p99/p99.9 "
        "83362/123208/135266 µs; no threshold, figures with no judgement"
    )


def test_thresholds_pass_and_fail_per_job() -> None:
    thresholds = {
        "min_seqread_mb_s": 250,
        "min_randread_iops": 60000,
        "max_randwrite_p99_us": 30000.0,
        "min_gemm_tflops": 700,  # another benchmark's: not read here
    }

    results = {r.id: r for r in evaluate_fio(section_from_recordings(), thresholds)}

    assert results["bench.fio.seqread"].status == "pass"
    assert results["bench.fio.seqread"].expected == {"min_seqread_mb_s": 250.0}
    assert results["bench.fio.seqread"].message.endswith("; within every threshold")
    assert results["bench.fio.seqwrite"].status == "pass"
    assert results["bench.fio.randread"].status == "fail"
    assert results["bench.fio.randread"].message.endswith("; below 60000 IOPS")
    assert results["bench.fio.randwrite"].status == "fail"
    assert results["bench.fio.randwrite"].message.endswith("; p99 above 30000 µs")


def test_buffered_runs_warn_and_failures_stay_failures() -> None:
    section = section_from_recordings(direct=False)

    results = evaluate_fio(section, {"min_seqwrite_mb_s": 10_000})

    assert [r.status for r in results] == ["warn", "fail", "warn", "warn"]
    assert all("ran buffered (O_DIRECT refused)" in r.message for r in results)


def test_a_section_error_is_an_error_result_beside_the_jobs_that_ran() -> None:
    section = section_from_recordings(error="deadline reached during randwrite: fio killed")
    section["jobs"] = section["jobs"][:3]

    results = evaluate_fio(section, {})

    assert [(r.id, r.status) for r in results] == [
        ("bench.fio.seqread", "pass"), ("bench.fio.seqwrite", "pass"),
        ("bench.fio.randread", "pass"), ("bench.fio", "error"),
    ]  # fmt: skip
    assert results[-1].message == "fio: deadline reached during randwrite: fio killed"


def test_nothing_measured_is_an_error() -> None:
    empty = section_from_recordings()
    empty["jobs"] = []

    assert [(r.id, r.status) for r in evaluate_fio(empty, {})] == [("bench.fio", "error")]
    [missing] = evaluate_fio(None, {})
    assert missing.status == "error"
    assert missing.message == "no fio results in the payload (NoneType)"


def test_a_malformed_threshold_is_an_error_for_its_job() -> None:
    malformed: dict[str, Any] = {"min_seqread_mb_s": "1"}

    results = {r.id: r for r in evaluate_fio(section_from_recordings(), malformed)}

    assert results["bench.fio.seqread"].status == "error"
    assert "min_seqread_mb_s" in results["bench.fio.seqread"].message
    assert results["bench.fio.seqwrite"].status == "pass"


def test_every_threshold_key_is_described() -> None:
    keys = threshold_keys()

    assert len(keys) == 12
    assert keys["min_seqread_mb_s"] == "number: fio seqread, least MB/s (10^6 B/s)"
    assert set(keys) >= {"min_randread_iops", "max_randwrite_p99_us"}


def test_results_serialize() -> None:
    for result in evaluate_fio(section_from_recordings(), {"min_seqread_mb_s": 1}):
        json.dumps(result.to_json())


# --- watching a running command ------------------------------------------------------------


def test_a_long_command_reports_progress_while_it_runs(tmp_path: Path) -> None:
    ticks: list[float] = []

    outcome = run_watched(
        ["sleep", "1"], str(tmp_path), str(tmp_path / "log"), time.monotonic() + 30,
        StopFlag(), None, ticks.append, 0.25,
    )  # fmt: skip

    assert (outcome.ending, outcome.returncode) == ("exited", 0)
    assert len(ticks) >= 2 and ticks == sorted(ticks)


def test_the_deadline_kills_the_command(tmp_path: Path) -> None:
    started = time.monotonic()

    outcome = run_watched(
        ["sleep", "30"], str(tmp_path), str(tmp_path / "log"), started + 0.3, StopFlag(), None,
        print, 5.0,
    )  # fmt: skip

    assert outcome.ending == "deadline"
    assert time.monotonic() - started < 5


def test_a_stop_signal_kills_the_command(tmp_path: Path) -> None:
    stop = StopFlag()
    stop.signum = signal.SIGTERM

    outcome = run_watched(
        ["sleep", "30"], str(tmp_path), str(tmp_path / "log"), time.monotonic() + 30, stop,
        None, print, 5.0,
    )  # fmt: skip

    assert outcome.ending == "stopped"
    assert stop.name() == "SIGTERM"
