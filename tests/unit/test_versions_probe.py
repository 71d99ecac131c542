"""The `versions` probe: OFED, NCCL and HCA firmware, parsed from samples captured on real
machines (tests/fixtures/real/versions/, SOURCES.md beside them) and read from recorded trees
through DCCTL_SYSROOT."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sysroots import FIXTURES, HEALTHY

from dcctl.node.probes import versions
from dcctl.node.sysroot import RECORDED_DIR, SYSROOT_ENV

REAL = FIXTURES / "real" / "versions"
GPUD_H100 = REAL / "gpud-h100"
REPO = Path(__file__).resolve().parents[2]
OFED_INFO = f"{RECORDED_DIR}/{versions.RECORDED_OFED_INFO}"  # recorded `ofed_info -s`


@pytest.mark.parametrize(
    ("sample", "version"),
    [
        ("daocloud-docs.txt", "23.07-0.5.1.2"),
        ("lshca-issue-102.txt", "24.07-0.3.5.0.110"),
        ("trex-core-pr-1046.txt", "23.04-1.1.3.0"),
    ],
)
def test_ofed_info_samples(sample: str, version: str) -> None:
    assert versions.parse_ofed_version((REAL / "ofed_info" / sample).read_text()) == version


@pytest.mark.parametrize("text", ["", "\n", "ofed_info: command not found\n", "N/A:"])
def test_ofed_info_without_a_version(text: str) -> None:
    assert versions.parse_ofed_version(text) is None


@pytest.mark.parametrize(
    ("text", "kernel", "version"),
    [
        ("5.8-1.1.2\n", "5.15.0-91-generic\n", "5.8-1.1.2"),
        ("23.10-0.5.5\n", None, "23.10-0.5.5"),
        # The kernel's own mlx5_core reports the kernel release: that is no OFED.
        ("5.15.0-91-generic\n", "5.15.0-91-generic\n", None),
        ("\n", "6.1.0", None),
        (None, "6.1.0", None),
    ],
)
def test_module_version(text: str | None, kernel: str | None, version: str | None) -> None:
    assert versions.parse_module_version(text, kernel) == version


def nccl_samples() -> list[Any]:
    entries = json.loads((REAL / "nccl-names.json").read_text())
    return [pytest.param(e["names"], e["version"], id=e["source"][:60]) for e in entries]


@pytest.mark.parametrize(("names", "version"), nccl_samples())
def test_nccl_names_samples(names: list[str], version: str | None) -> None:
    assert versions.parse_nccl_names(names) == version


def test_nccl_highest_of_several() -> None:
    names = ["libnccl.so.2.9.9", "libnccl.so.2.18.3", "libnccl.so.2.18.1"]
    assert versions.parse_nccl_names(names) == "2.18.3"


def test_hca_firmware_from_a_real_h100_tree(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SYSROOT_ENV, str(GPUD_H100))
    firmware = versions.collect_hca_firmware()
    connectx7 = {f"mlx5_{n}": "28.41.1000" for n in (0, 1, 4, 5, 6, 7, 8, 9)}
    assert firmware == {**connectx7, "mlx5_bond_0": "32.38.3056"}
    assert list(firmware)[:3] == ["mlx5_0", "mlx5_1", "mlx5_4"]  # natural order


def write(root: Path, path: str, text: str) -> None:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


def test_ofed_from_the_loaded_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, versions.MLX5_VERSION_PATH, "23.10-0.5.5\n")
    write(tmp_path, versions.KERNEL_RELEASE_PATH, "5.15.0-91-generic\n")
    # What is installed lags what runs until a reboot: the module wins.
    write(
        tmp_path,
        OFED_INFO,
        "MLNX_OFED_LINUX-24.04-0.6.6.0:\n",
    )
    monkeypatch.setenv(SYSROOT_ENV, str(tmp_path))
    assert versions.collect_ofed() == "23.10-0.5.5"


def test_ofed_from_ofed_info_when_no_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sample = (REAL / "ofed_info" / "daocloud-docs.txt").read_text()
    write(tmp_path, OFED_INFO, sample)
    monkeypatch.setenv(SYSROOT_ENV, str(tmp_path))
    assert versions.collect_ofed() == "23.07-0.5.1.2"


def test_inbox_driver_is_no_ofed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, versions.MLX5_VERSION_PATH, "6.1.0-18-amd64\n")
    write(tmp_path, versions.KERNEL_RELEASE_PATH, "6.1.0-18-amd64\n")
    write(tmp_path, OFED_INFO, "MLNX_OFED_LINUX-5.8-1.0.1.1:\n")
    monkeypatch.setenv(SYSROOT_ENV, str(tmp_path))
    assert versions.collect_ofed() is None


def test_nccl_prefers_the_wheel_beside_torch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = "/opt/venv/lib/python3.11/site-packages"
    (tmp_path / site.lstrip("/") / "nvidia_nccl_cu12-2.19.3.dist-info").mkdir(parents=True)
    write(tmp_path, "/usr/lib/x86_64-linux-gnu/libnccl.so.2.18.3", "")
    monkeypatch.setenv(SYSROOT_ENV, str(tmp_path))
    assert versions.collect_nccl([site]) == "2.19.3"
    assert versions.collect_nccl(["/nowhere"]) == "2.18.3"
    assert versions.collect_nccl(["/nowhere"], lib_dirs=("/usr/lib64",)) is None


def test_unreadable_sources_cost_only_their_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Directories where files should be: reading them fails with EISDIR, as a sysfs file the
    # kernel refuses fails with its own errno.
    (tmp_path / versions.MLX5_VERSION_PATH.lstrip("/")).mkdir(parents=True)
    (tmp_path / "sys/class/infiniband/mlx5_0/fw_ver").mkdir(parents=True)
    write(tmp_path, "/sys/class/infiniband/mlx5_1/fw_ver", "28.39.1002\n")
    monkeypatch.setenv(SYSROOT_ENV, str(tmp_path))
    assert versions.collect_versions() == {
        "ofed": None,
        "nccl": None,
        "hca_firmware": {"mlx5_1": "28.39.1002"},
    }


def test_recorded_node_without_these_files(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SYSROOT_ENV, str(HEALTHY))
    found = versions.collect_versions()
    assert found["ofed"] is None and found["nccl"] is None
    assert isinstance(found["hca_firmware"], dict)


def test_parsers_run_on_the_oldest_node_python() -> None:
    """The node runtime supports Python 3.8: its TypedDict and annotations must load there."""
    candidates = sorted(Path.home().glob(".pyenv/versions/3.8*/bin/python"))
    if not candidates:
        pytest.skip("no Python 3.8 on this machine")
    code = (
        "from dcctl.node.probes import versions as v; "
        "assert v.parse_ofed_version('MLNX_OFED_LINUX-23.07-0.5.1.2:') == '23.07-0.5.1.2'; "
        "assert v.parse_nccl_names(['libnccl.so.2.18.3']) == '2.18.3'; "
        "print(sorted(v.Versions.__annotations__))"
    )
    proc = subprocess.run(
        [str(candidates[0]), "-S", "-c", code],
        capture_output=True, text=True, cwd=REPO, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['hca_firmware', 'nccl', 'ofed']"
    assert sys.version_info >= (3, 10)  # and this module itself runs on the controller's
