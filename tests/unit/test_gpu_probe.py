"""The GPU probe: NVML recordings -> facts, and the NVML reader against a scripted pynvml."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sysroots import HEALTHY, build_sysroot

from dcctl.node import sysroot
from dcctl.node.probes import gpu
from dcctl.node.probes.gpu.nvml_read import NvmlFailed, NvmlTimeout, NvmlUnavailable

RECORDING = HEALTHY / "dcctl-recorded" / "nvml.json"
IDENTITY = ("index", "name", "uuid", "memory_total_bytes", "pci_bus_id")


def healthy_raw() -> dict[str, Any]:
    return dict(json.loads(RECORDING.read_text()))


# --- clock event reasons -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mask", "names"),
    [
        (0x0, []),
        (0x1, ["gpu_idle"]),
        (0x49, ["gpu_idle", "hw_slowdown", "hw_thermal"]),
        (0x24, ["sw_power_cap", "sw_thermal"]),
        (0x80, ["hw_power_brake"]),
        (0x200 | 0x2, ["applications_clocks"]),  # an unknown newer bit is dropped
    ],
)
def test_decode_clock_events(mask: int, names: list[str]) -> None:
    assert gpu.decode_clock_events(mask) == names


def test_decode_clock_events_every_known_bit_in_order() -> None:
    assert gpu.decode_clock_events(0x1FF) == [
        "gpu_idle", "applications_clocks", "sw_power_cap", "hw_slowdown", "sync_boost",
        "sw_thermal", "hw_thermal", "hw_power_brake", "display_clocks",
    ]  # fmt: skip


# --- parse_nvml ----------------------------------------------------------------------------


def test_parse_healthy_h100_gpu() -> None:
    facts = gpu.parse_nvml(healthy_raw())
    assert (facts["driver"], facts["cuda"]) == ("550.54.15", "12.4")
    first = facts["gpus"][0]
    nvlink = first.pop("nvlink")
    assert first == {
        "index": 0,
        "name": "NVIDIA H100 80GB HBM3",
        "uuid": "GPU-ac376f35-2448-4461-a104-b174eb2df7b3",
        "memory_total_mib": 81559,
        "pci_bus_id": "00000000:18:00.0",
        "serial": "1654223027418",
        "vbios": "96.00.99.00.01",
        "persistence_mode": True,
        "mig_mode": "off",
        "processes": [],
        "ecc": {
            "enabled": True,
            "volatile_corrected": 0,
            "volatile_uncorrected": 0,
            "aggregate_corrected": 0,
            "aggregate_uncorrected": 0,
        },
        "row_remap": {"correctable": 0, "uncorrectable": 0, "pending": False, "failed": False},
        "retired_pages": None,  # Hopper remaps rows instead
        "pcie": {"gen": 5, "gen_max": 5, "width": 16, "width_max": 16, "replays": 0},
        "clock_events": ["gpu_idle"],
        "temperature_c": 32,
        "temperature_slowdown_c": 89,
        "temperature_shutdown_c": 92,
        "power_w": 71.2,
        "power_limit_w": 700.0,
        "fabric": {"state": "completed", "status": 0},
    }
    assert [link["link"] for link in nvlink] == list(range(18))
    assert nvlink[0] == {
        "link": 0, "active": True, "replay": 0, "recovery": 0, "crc_flit": 0, "crc_data": 0,
    }  # fmt: skip


def test_healthy_recording_is_a_uniform_node() -> None:
    gpus = gpu.parse_nvml(healthy_raw())["gpus"]
    assert len({g["serial"] for g in gpus}) == 8
    assert {g["vbios"] for g in gpus} == {"96.00.99.00.01"}
    assert all(all(link["active"] for link in g["nvlink"]) for g in gpus)


def test_parse_identity_only_recording_leaves_health_unknown() -> None:
    # A recording from before the health fields (or a reader that could not get any).
    raw = healthy_raw()
    raw["devices"] = [{key: dev[key] for key in IDENTITY} for dev in raw["devices"]]
    first = gpu.parse_nvml(raw)["gpus"][0]
    assert first["ecc"] == dict.fromkeys(
        ("enabled", "volatile_corrected", "volatile_uncorrected", "aggregate_corrected",
         "aggregate_uncorrected")
    )  # fmt: skip
    assert first["pcie"] == dict.fromkeys(("gen", "gen_max", "width", "width_max", "replays"))
    unknown = (
        "serial", "vbios", "persistence_mode", "mig_mode", "processes", "row_remap",
        "retired_pages", "clock_events", "temperature_c", "temperature_slowdown_c",
        "temperature_shutdown_c", "power_w", "power_limit_w", "nvlink", "fabric",
    )  # fmt: skip
    assert {key: first[key] for key in unknown} == dict.fromkeys(unknown)


def test_parse_unsupported_readings_as_none() -> None:
    dev = healthy_raw()["devices"][0]
    dev.update(
        persistence_mode=None,
        mig_mode=None,
        compute_processes=None,
        remapped_rows=None,
        clock_event_reasons=None,
        power_usage_mw=None,
        fabric=None,
    )
    dev["ecc"] = {"mode": 0, "volatile_corrected": None, "volatile_uncorrected": None}
    dev["pcie"]["replay_counter"] = None
    parsed = gpu.parse_nvml_device(dev)
    assert parsed["persistence_mode"] is None
    assert parsed["mig_mode"] is None
    assert parsed["processes"] is None
    assert parsed["row_remap"] is None
    assert parsed["clock_events"] is None
    assert parsed["power_w"] is None
    assert parsed["fabric"] is None
    assert parsed["ecc"]["enabled"] is False
    assert parsed["ecc"]["volatile_uncorrected"] is None
    assert parsed["pcie"] == {"gen": 5, "gen_max": 5, "width": 16, "width_max": 16, "replays": None}


def test_parse_faulty_readings() -> None:
    dev = healthy_raw()["devices"][0]
    dev.update(
        persistence_mode=0,
        mig_mode=1,
        compute_processes=[
            {"pid": 4242, "name": "python3", "used_memory_bytes": 1_073_741_824},
            {"pid": 4243, "name": None, "used_memory_bytes": None},
        ],
        remapped_rows={"correctable": 0, "uncorrectable": 2, "pending": 0, "failure": 1},
        retired_pages={"single_bit": 3, "double_bit": 1, "pending": 1},
        fabric={"state": 2, "status": 0},
    )
    dev["nvlinks"][3]["state"] = 0
    parsed = gpu.parse_nvml_device(dev)
    assert parsed["persistence_mode"] is False
    assert parsed["mig_mode"] == "on"
    assert parsed["processes"] == [
        {"pid": 4242, "name": "python3", "used_memory_mib": 1024},
        {"pid": 4243, "name": None, "used_memory_mib": None},
    ]
    assert parsed["row_remap"] == {
        "correctable": 0, "uncorrectable": 2, "pending": False, "failed": True,
    }  # fmt: skip
    assert parsed["retired_pages"] == {"single_bit": 3, "double_bit": 1, "pending": True}
    assert parsed["fabric"] == {"state": "in_progress", "status": 0}
    assert parsed["nvlink"][3]["active"] is False


@pytest.mark.parametrize(
    ("state", "name"),
    [(0, "not_supported"), (1, "not_started"), (2, "in_progress"), (3, "completed"),
     (9, "unknown (9)")],
)  # fmt: skip
def test_parse_fabric_states(state: int, name: str) -> None:
    dev = healthy_raw()["devices"][0]
    dev["fabric"] = {"state": state, "status": 0}
    assert gpu.parse_nvml_device(dev)["fabric"]["state"] == name


# --- the reader under a sysroot ------------------------------------------------------------


def test_read_nvml_returns_the_sysroot_recording(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(sysroot.SYSROOT_ENV, str(HEALTHY))
    assert gpu.read_nvml() == healthy_raw()


def test_collect_gpu_without_a_recording_falls_back_to_procfs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    root = build_sysroot(tmp_path)
    (root / "dcctl-recorded" / "nvml.json").unlink()
    monkeypatch.setenv(sysroot.SYSROOT_ENV, str(root))
    assert gpu.read_nvml() is None
    facts = gpu.collect_gpu()
    # The live libcuda is not the recorded node's: no CUDA version.
    assert (facts["gpu_source"], facts["cuda"], len(facts["gpus"])) == ("procfs", None, 8)
    assert "vbios" not in facts["gpus"][0]


def test_collect_gpu_on_a_node_with_a_missing_gpu(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(sysroot.SYSROOT_ENV, str(build_sysroot(tmp_path, "gpu-missing")))
    facts = gpu.collect_gpu()
    buses = [g["pci_bus_id"] for g in facts["gpus"]]
    assert facts["gpu_source"] == "nvml"
    assert [g["index"] for g in facts["gpus"]] == list(range(7))
    assert "00000000:5D:00.0" not in buses
    assert [g["pci_bus_id"] for g in gpu.read_procfs_gpus()] == buses


# --- the live reader, against a scripted pynvml --------------------------------------------


class NVMLError(Exception):
    pass


class NotSupported(NVMLError):
    pass


class FunctionNotFound(NVMLError):
    pass


def unsupported(*args: Any) -> Any:
    raise NotSupported("Not Supported")


class FakeNvml:
    """The pynvml surface read_nvml uses, over one scripted H100 and one older GPU.

    GPU 1 stands for a pre-Ampere part on an old driver: no row remapping, no clock *event*
    call, no versioned fabric call, two NVLink links.
    """

    NVMLError = NVMLError
    NVML_MEMORY_ERROR_TYPE_CORRECTED, NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 0, 1
    NVML_VOLATILE_ECC, NVML_AGGREGATE_ECC = 0, 1
    NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS = 0
    NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR = 1
    NVML_TEMPERATURE_GPU = 0
    NVML_TEMPERATURE_THRESHOLD_SHUTDOWN, NVML_TEMPERATURE_THRESHOLD_SLOWDOWN = 0, 1
    NVML_NVLINK_MAX_LINKS = 18
    NVML_NVLINK_ERROR_DL_REPLAY, NVML_NVLINK_ERROR_DL_RECOVERY = 0, 1
    NVML_NVLINK_ERROR_DL_CRC_FLIT, NVML_NVLINK_ERROR_DL_CRC_DATA = 2, 3

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.fabric_versions: list[int] = []

    def __getattribute__(self, name: str) -> Any:
        if name.startswith("nvml") and name[4:5].isupper():
            object.__getattribute__(self, "calls").append(name)
        return object.__getattribute__(self, name)

    def nvmlInit(self) -> None: ...
    def nvmlShutdown(self) -> None: ...
    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlSystemGetDriverVersion(self) -> bytes:
        return b"550.54.15"  # older bindings return bytes

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return 12040

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetName(self, h: int) -> str:
        return "NVIDIA H100 80GB HBM3" if h == 0 else "Tesla V100-SXM2-32GB"

    def nvmlDeviceGetUUID(self, h: int) -> str:
        return f"GPU-{h}"

    def nvmlDeviceGetMemoryInfo(self, h: int) -> Any:
        return SimpleNamespace(total=85520809984)

    def nvmlDeviceGetPciInfo(self, h: int) -> Any:
        return SimpleNamespace(busId=b"00000000:18:00.0" if h == 0 else b"00000000:3B:00.0")

    def nvmlDeviceGetSerial(self, h: int) -> bytes:
        return b"1654223027418"

    def nvmlDeviceGetVbiosVersion(self, h: int) -> str:
        return "96.00.99.00.01"

    def nvmlDeviceGetPersistenceMode(self, h: int) -> int:
        return 1

    def nvmlDeviceGetMigMode(self, h: int) -> list[int]:
        if h == 1:
            raise NotSupported("Not Supported")
        return [0, 0]

    def nvmlDeviceGetComputeRunningProcesses(self, h: int) -> list[Any]:
        return [SimpleNamespace(pid=4242, usedGpuMemory=None)] if h == 0 else []

    def nvmlSystemGetProcessName(self, pid: int) -> bytes:
        return b"python3"

    def nvmlDeviceGetEccMode(self, h: int) -> list[int]:
        return [1, 1]

    def nvmlDeviceGetTotalEccErrors(self, h: int, error_type: int, counter_type: int) -> int:
        return 10 * counter_type + error_type  # distinct per counter

    def nvmlDeviceGetRemappedRows(self, h: int) -> tuple[int, int, int, int]:
        if h == 1:
            raise NotSupported("Not Supported")
        return (0, 1, 1, 0)

    def nvmlDeviceGetRetiredPages(self, h: int, cause: int) -> list[int]:
        if h == 0:
            raise NotSupported("Not Supported")
        return [0x1000, 0x2000] if cause == 0 else [0x3000]

    def nvmlDeviceGetRetiredPagesPendingStatus(self, h: int) -> int:
        if h == 0:
            raise NotSupported("Not Supported")
        return 0

    def nvmlDeviceGetCurrPcieLinkGeneration(self, h: int) -> int:
        return 5

    def nvmlDeviceGetMaxPcieLinkGeneration(self, h: int) -> int:
        return 5

    def nvmlDeviceGetCurrPcieLinkWidth(self, h: int) -> int:
        return 8

    def nvmlDeviceGetMaxPcieLinkWidth(self, h: int) -> int:
        return 16

    nvmlDeviceGetPcieReplayCounter = staticmethod(unsupported)

    def nvmlDeviceGetCurrentClocksEventReasons(self, h: int) -> int:
        if h == 1:
            raise FunctionNotFound("Function Not Found")
        return 0x48

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, h: int) -> int:
        return 0x20

    def nvmlDeviceGetTemperature(self, h: int, sensor: int) -> int:
        return 33

    def nvmlDeviceGetTemperatureThreshold(self, h: int, kind: int) -> int:
        return 89 if kind == 1 else 92

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:
        return 71234

    nvmlDeviceGetEnforcedPowerLimit = staticmethod(unsupported)

    def nvmlDeviceGetNvLinkState(self, h: int, link: int) -> int:
        if link >= (18 if h == 0 else 2):
            raise NotSupported("Not Supported")
        return 0 if link == 7 else 1

    def nvmlDeviceGetNvLinkErrorCounter(self, h: int, link: int, counter: int) -> int:
        if counter == 3:
            raise NotSupported("Not Supported")
        return link * 10 + counter

    def nvmlDeviceGetGpuFabricInfoV(self, h: int, ref: Any) -> int:
        if h == 1:
            raise FunctionNotFound("Function Not Found")
        info = ref._obj
        self.fabric_versions.append(info.version)
        info.state, info.status = 3, 0
        return 0

    def nvmlDeviceGetGpuFabricInfo(self, h: int, ref: Any) -> int:
        info = ref._obj
        info.state, info.status = 0, 0
        return 0


@pytest.fixture
def fake_nvml(monkeypatch: pytest.MonkeyPatch) -> FakeNvml:
    monkeypatch.delenv(sysroot.SYSROOT_ENV, raising=False)
    fake = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    return fake


def test_read_nvml_turns_unsupported_calls_into_none(fake_nvml: FakeNvml) -> None:
    raw = gpu.read_nvml()
    assert raw is not None
    json.dumps(raw)  # plain values only: the same shape a recording stores
    assert (raw["driver_version"], raw["cuda_driver_version"]) == ("550.54.15", 12040)
    h100, older = raw["devices"]
    assert h100["pci_bus_id"] == "00000000:18:00.0"
    assert h100["serial"] == "1654223027418"
    assert h100["compute_processes"] == [
        {"pid": 4242, "name": "python3", "used_memory_bytes": None}
    ]
    assert h100["ecc"] == {
        "mode": 1,
        "volatile_corrected": 0,
        "volatile_uncorrected": 1,
        "aggregate_corrected": 10,
        "aggregate_uncorrected": 11,
    }
    assert h100["remapped_rows"] == {
        "correctable": 0, "uncorrectable": 1, "pending": 1, "failure": 0,
    }  # fmt: skip
    assert h100["retired_pages"] is None
    assert h100["pcie"] == {
        "gen": 5, "gen_max": 5, "width": 8, "width_max": 16, "replay_counter": None,
    }  # fmt: skip
    assert h100["clock_event_reasons"] == 0x48
    assert (h100["power_usage_mw"], h100["power_limit_mw"]) == (71234, None)
    assert [link["link"] for link in h100["nvlinks"]] == list(range(18))
    assert h100["nvlinks"][7] == {
        "link": 7, "state": 0, "replay": 70, "recovery": 71, "crc_flit": 72, "crc_data": None,
    }  # fmt: skip
    assert h100["fabric"] == {"state": 3, "status": 0}
    # nvmlGpuFabricInfo_v2: the struct's size with version 2 in the top byte, as nvml.h has it.
    assert fake_nvml.fabric_versions == [0x02000024]
    assert older["mig_mode"] is None
    assert older["remapped_rows"] is None
    assert older["retired_pages"] == {"single_bit": 2, "double_bit": 1, "pending": 0}
    assert older["clock_event_reasons"] == 0x20  # from the pre-R535 name
    assert [link["link"] for link in older["nvlinks"]] == [0, 1]
    assert older["fabric"] == {"state": 0, "status": 0}  # from the unversioned call
    assert fake_nvml.calls[-1] == "nvmlShutdown"


def test_read_nvml_output_parses(fake_nvml: FakeNvml) -> None:
    raw = gpu.read_nvml()
    assert raw is not None
    h100, older = gpu.parse_nvml(raw)["gpus"]
    assert h100["clock_events"] == ["hw_slowdown", "hw_thermal"]
    assert h100["pcie"]["width"] == 8
    assert older["clock_events"] == ["sw_thermal"]
    assert older["fabric"] == {"state": "not_supported", "status": 0}


class GpuIsLost(NVMLError):
    pass


def lost(*args: Any) -> Any:
    raise GpuIsLost("GPU is lost")


def test_a_lost_gpu_does_not_blind_the_others(
    fake_nvml: FakeNvml, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GPU 0 answers its bus id, then is lost; GPU 1 keeps its full readings.
    def uuid(self: FakeNvml, h: int) -> str:
        if h == 0:
            raise GpuIsLost("GPU is lost")
        return f"GPU-{h}"

    monkeypatch.setattr(FakeNvml, "nvmlDeviceGetUUID", uuid)
    raw = gpu.read_nvml()
    assert raw is not None
    h100, older = raw["devices"]
    assert h100 == {"index": 0, "pci_bus_id": "00000000:18:00.0", "error": "GpuIsLost: GPU is lost"}
    assert older["name"] == "Tesla V100-SXM2-32GB"
    assert older["retired_pages"] == {"single_bit": 2, "double_bit": 1, "pending": 0}
    assert fake_nvml.calls[-1] == "nvmlShutdown"
    parsed = gpu.parse_nvml(raw)["gpus"]
    assert parsed[0] == {
        "index": 0,
        "pci_bus_id": "00000000:18:00.0",
        "error": "GpuIsLost: GPU is lost",
    }
    assert parsed[1]["pci_bus_id"] == "00000000:3B:00.0" and "error" not in parsed[1]


def test_a_gpu_without_a_handle_has_no_bus_id(
    fake_nvml: FakeNvml, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(FakeNvml, "nvmlDeviceGetHandleByIndex", lost)
    raw = gpu.read_nvml()
    assert raw is not None
    assert raw["devices"] == [
        {"index": 0, "error": "GpuIsLost: GPU is lost"},
        {"index": 1, "error": "GpuIsLost: GPU is lost"},
    ]
    assert gpu.parse_nvml(raw)["gpus"][1] == {
        "index": 1, "pci_bus_id": None, "error": "GpuIsLost: GPU is lost",
    }  # fmt: skip


class LibRmVersionMismatch(NVMLError):
    pass


def mismatch(*args: Any) -> Any:
    raise LibRmVersionMismatch("RM has detected an NVML/RM version mismatch.")


@pytest.mark.parametrize("call", ["nvmlInit", "nvmlDeviceGetCount", "nvmlSystemGetDriverVersion"])
def test_nvml_failure_is_raised_as_such(
    fake_nvml: FakeNvml, monkeypatch: pytest.MonkeyPatch, call: str
) -> None:
    monkeypatch.setattr(FakeNvml, call, mismatch)
    with pytest.raises(NvmlFailed, match=r"^LibRmVersionMismatch: RM has detected an NVML/RM"):
        gpu.read_nvml()
    if call != "nvmlInit":
        assert fake_nvml.calls[-1] == "nvmlShutdown"


def test_pynvml_missing_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(sysroot.SYSROOT_ENV, raising=False)
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import raises ModuleNotFoundError
    assert gpu.read_nvml() is None


def test_broken_pynvml_is_unavailable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(sysroot.SYSROOT_ENV, raising=False)
    (tmp_path / "pynvml.py").write_text("raise OSError('wrong libc')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "pynvml", raising=False)
    with pytest.raises(NvmlUnavailable, match=r"pynvml not available on the node \(OSError"):
        gpu.read_nvml()


# --- collect_gpu: NVML failures with the driver loaded -------------------------------------


@pytest.fixture
def driver_tree(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The healthy node's tree: driver loaded, procfs lists 8 GPUs."""
    root = build_sysroot(tmp_path)
    monkeypatch.setenv(sysroot.SYSROOT_ENV, str(root))
    return root


def failing(exc: Exception) -> Any:
    def reader() -> Any:
        raise exc

    return reader


def test_nvml_init_failure_is_recorded(driver_tree: Path) -> None:
    reason = "NVMLError_LibRmVersionMismatch: RM has detected an NVML/RM version mismatch."
    facts = gpu.collect_gpu(reader=failing(NvmlFailed(reason)))
    assert facts["nvml_error"] == {"kind": "failed", "message": reason}
    assert facts["probe_errors"] == {"nvml": reason}
    assert (facts["gpu_source"], facts["driver"], len(facts["gpus"])) == ("procfs", "550.54.15", 8)


def test_recorded_nvml_failure(driver_tree: Path) -> None:
    reason = "NVMLError_LibRmVersionMismatch: RM has detected an NVML/RM version mismatch."
    (driver_tree / "dcctl-recorded" / "nvml.json").write_text(json.dumps({"error": reason}))
    facts = gpu.collect_gpu()
    assert facts["nvml_error"] == {"kind": "failed", "message": reason}


def test_no_recording_is_unavailable_without_a_probe_error(driver_tree: Path) -> None:
    (driver_tree / "dcctl-recorded" / "nvml.json").unlink()
    facts = gpu.collect_gpu()
    assert facts["nvml_error"] == {
        "kind": "unavailable",
        "message": "no NVML recording (/dcctl-recorded/nvml.json)",
    }
    assert "probe_errors" not in facts


def test_live_node_without_pynvml_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(sysroot.SYSROOT_ENV, raising=False)
    monkeypatch.setitem(sys.modules, "pynvml", None)
    driver = (
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:56 UTC 2024\n"
    )
    monkeypatch.setattr(gpu, "read_text", lambda path: driver)  # a loaded driver
    facts = gpu.collect_gpu()
    assert facts["nvml_error"] == {
        "kind": "unavailable",
        "message": "pynvml not available on the node",
    }
    assert (facts["driver"], facts["gpu_source"]) == ("550.54.15", "procfs")


def test_unexpected_reader_failure_is_an_error_kind(driver_tree: Path) -> None:
    facts = gpu.collect_gpu(reader=failing(TypeError("bad binding")))
    assert facts["nvml_error"] == {"kind": "error", "message": "TypeError: bad binding"}


def test_hung_nvml_gives_up_at_the_deadline(driver_tree: Path) -> None:
    release = threading.Event()

    def hung() -> Any:
        release.wait(30)
        return healthy_raw()

    started = time.monotonic()
    try:
        facts = gpu.collect_gpu(nvml_timeout_s=0.2, reader=hung)
    finally:
        release.set()
    assert time.monotonic() - started < 5
    assert facts["nvml_error"] == {"kind": "timeout", "message": "NVML did not answer within 0.2 s"}
    assert facts["probe_errors"] == {"nvml": "NVML did not answer within 0.2 s"}
    assert (facts["gpu_source"], len(facts["gpus"])) == ("procfs", 8)


def test_read_nvml_within_hands_back_the_answer_or_the_exception() -> None:
    assert gpu.read_nvml_within(5, lambda: {"devices": []}) == {"devices": []}
    with pytest.raises(NvmlFailed, match="boom"):
        gpu.read_nvml_within(5, failing(NvmlFailed("boom")))
    with pytest.raises(NvmlTimeout, match=r"NVML did not answer within 0\.05 s"):
        gpu.read_nvml_within(0.05, lambda: time.sleep(1))


def test_live_h200_recording_parses_and_passes() -> None:
    """NVML as read by read_nvml on a real H200 (driver 580.159.04), recorded by
    tests/gpu/run_on_gpu.sh: the parser and the health checks accept what a live driver says."""
    import json
    from pathlib import Path

    from dcctl.evaluate.gpu_health import evaluate_gpu_health
    from dcctl.node.probes.gpu import parse_nvml

    raw = json.loads((Path(__file__).parents[1] / "fixtures/nvml/h200-live.json").read_text())
    facts = {**parse_nvml(raw), "gpu_source": "nvml"}
    (gpu,) = facts["gpus"]
    assert (facts["driver"], facts["cuda"], gpu["name"]) == ("580.159.04", "13.0", "NVIDIA H200")
    assert gpu["pcie"] == {"gen": 5, "gen_max": 5, "width": 16, "width_max": 16, "replays": 0}
    assert gpu["clock_events"] == ["gpu_idle"]
    assert (gpu["power_w"], gpu["power_limit_w"]) == (116.1, 700.0)
    results = evaluate_gpu_health(facts, {})
    assert results and {r.status for r in results} == {"pass"}
