"""Node probes: pure parsers from recorded text, collectors from recorded sysroot trees."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dcctl.node import sysroot
from dcctl.node.probes import gpu, ib, software, system

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
SYSROOTS = FIXTURES / "sysroots"
HEALTHY = SYSROOTS / "healthy-h100"
NO_GPU = SYSROOTS / "no-gpu"
DEGRADED = SYSROOTS / "ib-degraded"


def fixture_text(root: Path, path: str) -> str:
    return (root / path.lstrip("/")).read_text()


@pytest.fixture
def use_sysroot(monkeypatch: pytest.MonkeyPatch) -> Any:
    def apply(root: Path) -> None:
        monkeypatch.setenv(sysroot.SYSROOT_ENV, str(root))

    return apply


# --- sysroot -------------------------------------------------------------------------------


def test_sysroot_path_is_identity_without_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(sysroot.SYSROOT_ENV, raising=False)
    assert sysroot.sysroot_path("/proc/meminfo") == "/proc/meminfo"
    assert sysroot.active_sysroot() is None


def test_sysroot_path_reroots_absolute_paths_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(sysroot.SYSROOT_ENV, "/srv/record")
    assert sysroot.sysroot_path("/proc/meminfo") == "/srv/record/proc/meminfo"
    assert sysroot.sysroot_path("relative/file") == "relative/file"


def test_read_text_missing_file_is_none(use_sysroot: Any) -> None:
    use_sysroot(NO_GPU)
    assert sysroot.read_text("/proc/driver/nvidia/version") is None
    assert sysroot.read_text("/proc/sys/kernel/osrelease") == "6.1.0-18-amd64\n"


# --- system --------------------------------------------------------------------------------


def test_parse_os_release_ubuntu() -> None:
    facts = system.parse_os_release(fixture_text(HEALTHY, "/etc/os-release"))
    assert facts == {"pretty_name": "Ubuntu 22.04.4 LTS", "id": "ubuntu", "version_id": "22.04"}


def test_parse_os_release_debian_and_odd_lines() -> None:
    facts = system.parse_os_release(fixture_text(NO_GPU, "/etc/os-release"))
    assert facts["pretty_name"] == "Debian GNU/Linux 12 (bookworm)"
    assert facts["id"] == "debian"
    text = '# comment\n\nNAME=\'Rocky Linux\'\nID=rocky\nVERSION_ID="9.3"\nBROKEN="unterminated\n'
    assert system.parse_os_release(text) == {
        "pretty_name": None,
        "id": "rocky",
        "version_id": "9.3",
    }


def test_parse_cpuinfo_two_socket_sapphire_rapids() -> None:
    facts = system.parse_cpuinfo(fixture_text(HEALTHY, "/proc/cpuinfo"))
    assert facts == {
        "model": "Intel(R) Xeon(R) Platinum 8480C",
        "sockets": 2,
        "cores": 112,
        "threads": 224,
    }


def test_parse_cpuinfo_single_socket_epyc() -> None:
    facts = system.parse_cpuinfo(fixture_text(NO_GPU, "/proc/cpuinfo"))
    assert facts == {
        "model": "AMD EPYC 7313P 16-Core Processor",
        "sockets": 1,
        "cores": 16,
        "threads": 32,
    }


def test_parse_cpuinfo_arm_without_topology() -> None:
    # Grace (aarch64) /proc/cpuinfo: no model name, no physical id or core id.
    block = (
        "processor\t: {n}\nBogoMIPS\t: 2000.00\nFeatures\t: fp asimd evtstrm aes pmull sha1\n"
        "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\n"
        "CPU part\t: 0xd4f\nCPU revision\t: 0\n"
    )
    text = "\n".join(block.format(n=n) for n in range(72))
    facts = system.parse_cpuinfo(text)
    assert facts == {
        "model": "Arm implementer 0x41 part 0xd4f",
        "sockets": 1,
        "cores": 72,
        "threads": 72,
    }


def test_parse_meminfo_large_node_without_swap() -> None:
    facts = system.parse_meminfo(fixture_text(HEALTHY, "/proc/meminfo"))
    assert facts["memory"] == {"total_gb": 2015.5, "available_gb": 1975.3}
    assert facts["swap"] == {"total_gb": 0.0, "used_gb": 0.0}


def test_parse_meminfo_with_swap_in_use() -> None:
    facts = system.parse_meminfo(fixture_text(NO_GPU, "/proc/meminfo"))
    assert facts["memory"]["total_gb"] == 125.7
    assert facts["swap"] == {"total_gb": 8.0, "used_gb": 2.1}


def test_parse_meminfo_old_kernel_estimates_available() -> None:
    text = "MemTotal: 4194304 kB\nMemFree: 1048576 kB\nBuffers: 524288 kB\nCached: 1048576 kB\n"
    assert system.parse_meminfo(text)["memory"] == {"total_gb": 4.0, "available_gb": 2.5}


def test_parse_uptime() -> None:
    assert system.parse_uptime(fixture_text(HEALTHY, "/proc/uptime")) == 1834567.42


def test_parse_mounts_drops_pseudo_filesystems_and_unescapes() -> None:
    mounts = system.parse_mounts(fixture_text(HEALTHY, "/proc/mounts"))
    points = [m["mountpoint"] for m in mounts]
    assert "/proc" not in points
    assert "/sys/fs/cgroup" not in points
    by_point = {m["mountpoint"]: m for m in mounts}
    assert by_point["/data"]["device"] == "10.0.0.5:/export/data"
    assert by_point["/data"]["fstype"] == "nfs4"
    assert by_point["/"] == {"device": "/dev/md1", "mountpoint": "/", "fstype": "ext4",
                             "options": ["rw", "relatime"]}  # fmt: skip
    assert by_point["/mnt/local scratch"]["device"] == "/dev/nvme2n1"
    # autofs stays: an automounted path counts as present before anyone touched it.
    assert "autofs" in {m["fstype"] for m in mounts}


def test_nearest_existing_walks_up(tmp_path: Path) -> None:
    assert system.nearest_existing(str(tmp_path / "a" / "b" / "c")) == str(tmp_path)
    assert system.nearest_existing(str(tmp_path)) == str(tmp_path)


def test_collect_scratch_reports_free_space_of_ancestor(tmp_path: Path) -> None:
    facts = system.collect_scratch(str(tmp_path / "not" / "yet"))
    stats = os.statvfs(tmp_path)
    assert facts["path"] == str(tmp_path / "not" / "yet")
    assert facts["exists"] is False
    assert facts["free_gb"] == pytest.approx(stats.f_bavail * stats.f_frsize / 1024**3, abs=0.5)
    assert system.collect_scratch(str(tmp_path))["exists"] is True


def test_system_collectors_read_the_sysroot(use_sysroot: Any) -> None:
    use_sysroot(NO_GPU)
    assert system.collect_kernel() == "6.1.0-18-amd64"
    assert system.collect_os() == {
        "pretty_name": "Debian GNU/Linux 12 (bookworm)",
        "id": "debian",
        "version_id": "12",
    }
    assert system.collect_uptime() == 86412.07
    assert system.collect_memory()["swap"] == {"total_gb": 8.0, "used_gb": 2.1}


def test_system_collectors_tolerate_a_partial_recording(use_sysroot: Any) -> None:
    use_sysroot(DEGRADED)
    assert system.collect_cpu() is None
    assert system.collect_memory() == {"memory": None, "swap": None}
    assert system.collect_mounts() is None
    assert system.collect_uptime() is None


# --- gpu -----------------------------------------------------------------------------------


def test_parse_driver_version_proprietary_module() -> None:
    text = fixture_text(HEALTHY, "/proc/driver/nvidia/version")
    assert gpu.parse_driver_version(text) == "550.54.15"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  550.54.15  Release Build  "
            "(dvs-builder@U16-I3-B03-4-3)  Tue Mar  5 22:20:38 UTC 2024",
            "550.54.15",
        ),
        (
            "NVRM version: NVIDIA UNIX Open Kernel Module for aarch64  560.35.03  Release Build  "
            "(dvs-builder@U16-I1-N07-12-3)  Fri Aug 16 21:42:42 UTC 2024",
            "560.35.03",
        ),
        ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  470.82.01  Wed Oct 27 2021", "470.82.01"),
        ("NVRM version: something new", None),
    ],
)
def test_parse_driver_version_forms(line: str, expected: str | None) -> None:
    assert gpu.parse_driver_version(line + "\nGCC version:  gcc version 12.3.0\n") == expected


def test_parse_driver_version_without_nvrm_line() -> None:
    assert gpu.parse_driver_version("GCC version: gcc 12\n") is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [(12040, "12.4"), (11080, "11.8"), (12000, "12.0"), (12060, "12.6"), (0, None)],
)
def test_format_cuda_version(value: int, expected: str | None) -> None:
    assert gpu.format_cuda_version(value) == expected


def test_parse_nvml_recording() -> None:
    raw = json.loads((FIXTURES / "nvml" / "healthy-h100.json").read_text())
    facts = gpu.parse_nvml(raw)
    assert facts["driver"] == "550.54.15"
    assert facts["cuda"] == "12.4"
    assert len(facts["gpus"]) == 8
    first = facts["gpus"][0]
    identity = {key: first[key] for key in ("index", "name", "uuid", "memory_total_mib")}
    assert identity == {
        "index": 0,
        "name": "NVIDIA H100 80GB HBM3",
        "uuid": raw["devices"][0]["uuid"],
        "memory_total_mib": 81559,
    }
    assert first["pci_bus_id"] == "00000000:18:00.0"
    assert [g["index"] for g in facts["gpus"]] == list(range(8))
    assert len({g["uuid"] for g in facts["gpus"]}) == 8


def test_parse_nvml_sorts_by_index() -> None:
    raw = json.loads((FIXTURES / "nvml" / "healthy-h100.json").read_text())
    raw["devices"].reverse()
    assert [g["index"] for g in gpu.parse_nvml(raw)["gpus"]] == list(range(8))


def test_normalize_bus_id() -> None:
    assert gpu.normalize_bus_id("0000:2a:00.0") == "00000000:2A:00.0"
    assert gpu.normalize_bus_id("00000000:2A:00.0") == "00000000:2A:00.0"


def test_parse_procfs_gpus_matches_nvml_identity() -> None:
    directory = HEALTHY / "proc/driver/nvidia/gpus"
    # Listed in reverse to show the parser, not the directory order, decides the index.
    texts = [(d / "information").read_text() for d in sorted(directory.iterdir(), reverse=True)]
    gpus = gpu.parse_procfs_gpus(texts)
    raw = json.loads((FIXTURES / "nvml" / "healthy-h100.json").read_text())
    nvml = gpu.parse_nvml(raw)["gpus"]
    assert [(g["index"], g["uuid"], g["pci_bus_id"]) for g in gpus] == [
        (g["index"], g["uuid"], g["pci_bus_id"]) for g in nvml
    ]
    assert all(g["name"] == "NVIDIA H100 80GB HBM3" for g in gpus)
    assert all(g["memory_total_mib"] is None for g in gpus)


def test_collect_gpu_without_driver(use_sysroot: Any) -> None:
    use_sysroot(NO_GPU)
    assert gpu.driver_loaded() is False
    assert gpu.collect_gpu() == {"driver": None, "cuda": None, "gpus": [], "gpu_source": "none"}


def test_collect_gpu_from_recorded_driver_tree(use_sysroot: Any) -> None:
    use_sysroot(HEALTHY)
    facts = gpu.collect_gpu()
    assert gpu.driver_loaded() is True
    assert facts["driver"] == "550.54.15"
    # Under a sysroot, live NVML/libcuda are not consulted: the tree's NVML recording is.
    assert facts["gpu_source"] == "nvml"
    assert facts["cuda"] == "12.4"
    assert [g["pci_bus_id"][9:11] for g in facts["gpus"]] == [
        "18", "2A", "3A", "5D", "9A", "AB", "BA", "DB",
    ]  # fmt: skip


def test_read_nvml_without_pynvml_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DCCTL_SYSROOT", raising=False)
    # None in sys.modules makes `import pynvml` raise ModuleNotFoundError, as on a bare node.
    monkeypatch.setitem(sys.modules, "pynvml", None)
    assert gpu.read_nvml() is None


def test_read_nvml_without_a_driver_says_nvml_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DCCTL_SYSROOT", raising=False)
    if gpu.driver_loaded():
        pytest.skip("an NVIDIA driver is loaded here")
    from dcctl.node.probes.gpu.nvml_read import NvmlFailed

    with pytest.raises(NvmlFailed, match=r"Library Not Found|not found"):
        gpu.read_nvml()


def test_read_libcuda_version_without_driver_is_none() -> None:
    if gpu.driver_loaded():
        pytest.skip("an NVIDIA driver is loaded here")
    assert gpu.read_libcuda_version() is None


# --- software ------------------------------------------------------------------------------


def test_parse_fio_version() -> None:
    assert software.parse_fio_version("fio-3.33\n") == "3.33"
    assert software.parse_fio_version("fio-3.28-dirty\n") == "3.28"
    assert software.parse_fio_version("command not found") is None


def test_collect_fio_matches_installed_binary() -> None:
    import shutil
    import subprocess

    path = shutil.which("fio")
    if path is None:
        assert software.collect_fio() is None
        return
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=True).stdout
    assert software.collect_fio() == out.strip().removeprefix("fio-")


def test_collect_torch_reads_the_version_without_importing_torch() -> None:
    import sys

    version = software.torch_version()
    facts = software.collect_torch()
    assert facts == (None if version is None else {"version": version})
    assert "torch" not in sys.modules


# --- ib ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("400 Gb/sec (4X NDR)\n", 400),
        ("200 Gb/sec (4X HDR)", 200),
        ("100 Gb/sec (2X HDR)", 100),
        ("2.5 Gb/sec (1X SDR)", 2.5),
        ("garbage", None),
    ],
)
def test_parse_rate_gbps(text: str, expected: float | None) -> None:
    value = ib.parse_rate_gbps(text)
    assert value == expected
    if isinstance(expected, int):
        assert isinstance(value, int)


def test_parse_port_strips_state_codes() -> None:
    files: dict[str, str | None] = {
        "state": "1: DOWN\n",
        "phys_state": "2: Polling\n",
        "rate": "10 Gb/sec (4X SDR)\n",
        "link_layer": None,
    }
    assert ib.parse_port("mlx5_3", "1", files) == {
        "device": "mlx5_3",
        "port": 1,
        "state": "DOWN",
        "phys_state": "Polling",
        "rate_gbps": 10,
        "link_layer": None,
        "counters": dict.fromkeys(ib.COUNTER_FILES),
    }


def test_natural_key_orders_devices() -> None:
    names = ["mlx5_10", "mlx5_2", "mlx5_1", "ibp12s0"]
    assert sorted(names, key=ib.natural_key) == ["ibp12s0", "mlx5_1", "mlx5_2", "mlx5_10"]


def test_collect_ib_healthy(use_sysroot: Any) -> None:
    use_sysroot(HEALTHY)
    ports = ib.collect_ib()
    infiniband = [p for p in ports if p["link_layer"] == "InfiniBand"]
    assert len(infiniband) == 8
    assert {(p["state"], p["phys_state"], p["rate_gbps"]) for p in infiniband} == {
        ("ACTIVE", "LinkUp", 400)
    }
    assert [p["device"] for p in infiniband] == [f"mlx5_{n}" for n in range(8)]
    assert {"device": "mlx5_8", "port": 1, "state": "ACTIVE", "phys_state": "LinkUp",
            "rate_gbps": 100, "link_layer": "Ethernet",
            "counters": dict.fromkeys(ib.COUNTER_FILES)} in ports  # fmt: skip


def test_collect_ib_degraded(use_sysroot: Any) -> None:
    use_sysroot(DEGRADED)
    by_device = {p["device"]: p for p in ib.collect_ib()}
    assert by_device["mlx5_3"]["state"] == "DOWN"
    assert by_device["mlx5_3"]["phys_state"] == "Polling"
    assert by_device["mlx5_5"]["rate_gbps"] == 200
    assert by_device["mlx5_5"]["state"] == "ACTIVE"


def test_collect_ib_without_rdma_devices(use_sysroot: Any) -> None:
    use_sysroot(NO_GPU)
    assert ib.collect_ib() == []


def test_parse_torch_version_file() -> None:
    text = "from typing import Optional\n__version__ = '2.13.0+cpu'\ncuda: Optional[str] = None\n"
    assert software.parse_torch_version_file(text) == "2.13.0+cpu"
    assert software.parse_torch_version_file("nothing here") is None


def test_torch_version_matches_the_installed_package() -> None:
    from importlib import metadata

    try:
        installed = metadata.version("torch")
    except metadata.PackageNotFoundError:
        installed = None
    assert software.torch_version() == installed


def _torch_version_seen_by(python: str) -> str:
    """torch_version() as the shipped runtime computes it: under -S, no site hooks run."""
    repo = str(Path(software.__file__).resolve().parents[3])
    code = (
        f"import sys; sys.path.insert(0, {repo!r}); "
        "from dcctl.node.probes import software; print(software.torch_version())"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    proc = subprocess.run(
        [python, "-S", "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@pytest.mark.parametrize("system_site", [False, True], ids=["isolated-venv", "system-site-venv"])
def test_torch_version_without_site_follows_the_interpreters_venv(
    tmp_path: Path, system_site: bool
) -> None:
    from importlib import metadata

    try:
        installed = metadata.version("torch")
    except metadata.PackageNotFoundError:
        pytest.skip("torch is not installed for this interpreter")
    assert _torch_version_seen_by(sys.executable) == installed
    # A venv made from inside a venv sits on the base interpreter, not on this venv: with
    # system site-packages it sees the base's torch, which may be none at all.
    base = _base_interpreter()
    venv = tmp_path / "venv"
    flags = ["--system-site-packages"] if system_site else []
    subprocess.run([base, "-m", "venv", "--without-pip", *flags, str(venv)], check=True)
    expected = _torch_installed_for(base) if system_site else "None"
    assert _torch_version_seen_by(str(venv / "bin" / "python")) == expected


def _base_interpreter() -> str:
    """The interpreter this one was made from (itself, outside a venv)."""
    name = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    candidate = Path(sys.base_prefix) / "bin" / name
    return str(candidate) if candidate.exists() else sys.executable


def _torch_installed_for(python: str) -> str:
    """torch's version as that interpreter's package metadata (with its site) tells it."""
    code = (
        "from importlib import metadata\n"
        "try:\n    print(metadata.version('torch'))\n"
        "except metadata.PackageNotFoundError:\n    print(None)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    proc = subprocess.run([python, "-c", code], capture_output=True, text=True, env=env, check=True)
    return proc.stdout.strip()


def test_fio_version_is_remembered_while_the_binary_stays_the_same(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    fio = tmp_path / "fio"
    fio.write_text(f"#!/bin/sh\necho x >> {calls}\necho fio-3.35\n")
    fio.chmod(0o755)
    cache = tmp_path / "cache"
    cache.mkdir()
    assert software.cached_fio_version(str(fio), str(cache)) == "3.35"
    assert software.cached_fio_version(str(fio), str(cache)) == "3.35"
    assert calls.read_text().count("x") == 1
    # Upgraded in place: a different file, so asked again.
    fio.write_text(f"#!/bin/sh\necho x >> {calls}\necho fio-3.36-dirty\n")
    assert software.cached_fio_version(str(fio), str(cache)) == "3.36"
    assert calls.read_text().count("x") == 2
    assert [p.name for p in cache.iterdir()] == [software.FIO_CACHE_FILE]


def test_fio_version_with_an_unwritable_cache_is_still_read(tmp_path: Path) -> None:
    fio = tmp_path / "fio"
    fio.write_text("#!/bin/sh\necho fio-3.35\n")
    fio.chmod(0o755)
    assert software.cached_fio_version(str(fio), str(tmp_path / "missing")) == "3.35"


@pytest.mark.parametrize("base", [sys.executable, "/usr/bin/python3"], ids=["this", "system"])
def test_torch_installed_in_a_venv_is_found_without_site(tmp_path: Path, base: str) -> None:
    """The venv's own site-packages, whatever the base Python's site would say for its
    prefix (Debian's gives only dist-packages there)."""
    if not Path(base).exists():
        pytest.skip(f"{base} is not on this machine")
    venv = tmp_path / "venv"
    made = subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"{base} cannot make a venv: {made.stderr.decode().strip()[-200:]}")
    python = venv / "bin" / "python"
    print_version = "import sys; print('python%d.%d' % sys.version_info[:2])"
    version = subprocess.run(
        [str(python), "-c", print_version], capture_output=True, text=True, check=True
    ).stdout.strip()
    torch_dir = venv / "lib" / version / "site-packages" / "torch"
    torch_dir.mkdir(parents=True)
    (torch_dir / "version.py").write_text("__version__ = '9.9.9+venv'\n")
    assert _torch_version_seen_by(str(python)) == "9.9.9+venv"
