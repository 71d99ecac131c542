"""NVIDIA XIDs: what each one means, what NVIDIA's Xid catalog says to do, and dcctl's status.

The status follows the catalog's "Resolution Bucket (Immediate Action)" column
(docs.nvidia.com/deploy/xid-errors/analyzing-xid-catalog.html, the r590 catalog), as
ACTION_STATUS maps it: an XID whose action is to reset the GPU, reboot, check the hardware or
run one of NVIDIA's repair workflows fails the node; one to restart the application (the
fault was the program's) or to ignore is counted, not judged; CHECK_UVM warns; XID 154 is
judged by the recovery action its line names (see node_health). Where this table names no
action (`action` ""), the catalog's entry has not been checked against dcctl's reading yet and
the older split applies: "hardware" XIDs fail, "application" XIDs are counted. An XID missing
from the table warns, so one added in a later driver is seen rather than dropped. An
inventory can override any of them (`expect.xid_status`).

Sources of the actions: the catalog page itself (XIDs 1-8 read there) and, for the rest, its
transcription in the public node-check script quoted in tests/unit/test_xid_catalog.py
("Classification aligned with NVIDIA XID Errors r590 catalog, Resolution Bucket (Immediate
Action) column"). Check a changed row against the catalog's spreadsheet before relying on it.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

Status = Literal["fail", "warn", "count"]

# Immediate action -> dcctl status. Anything that needs the GPU reset, the node rebooted, a
# person at the hardware, NVIDIA's repair workflow or support is a failed acceptance check.
ACTION_STATUS: dict[str, Status] = {
    "IGNORE": "count",
    "RESTART_APP": "count",
    "CHECK_UVM": "warn",
    "UPDATE_SWFW": "warn",
    "XID_154": "warn",  # escalated to fail when the line asks for a reset, reboot or drain
    "RESET_GPU": "fail",
    "RESTART_BM": "fail",
    "RESTART_VM": "fail",
    "CHECK_MECHANICALS": "fail",
    "CONTACT_SUPPORT": "fail",
    "WORKFLOW_XID_48": "fail",
    "WORKFLOW_NVLINK_ERR": "fail",
    "WORKFLOW_NVLINK5_ERR": "fail",
}


class XidInfo(NamedTuple):
    meaning: str
    action: str  # the catalog's immediate action; "" where not yet checked (see above)
    status: Status


def _hw(meaning: str) -> XidInfo:
    return XidInfo(meaning, "", "fail")


def _app(meaning: str) -> XidInfo:
    return XidInfo(meaning, "", "count")


def _do(action: str, meaning: str) -> XidInfo:
    return XidInfo(meaning, action, ACTION_STATUS[action])


_SEE_CATALOG = "see NVIDIA's Xid catalog"

XIDS: dict[int, XidInfo] = {
    # Raised by programs (bad memory access, illegal instruction, killed or hung kernels).
    8: _do("RESTART_APP", "GPU stopped processing (channel idle timeout)"),
    13: _do(
        "RESTART_APP", "graphics engine exception (usually an illegal access in a CUDA kernel)"
    ),
    31: _do("RESTART_APP", "GPU memory page fault (usually an illegal address in the application)"),
    32: _app("invalid or corrupted push buffer stream"),
    38: _app("driver firmware error"),
    43: _do("IGNORE", "GPU stopped processing (a user channel was reset after a fault)"),
    45: _app("preemptive cleanup after a previous error (the channel was torn down)"),
    109: _do("RESET_GPU", "context switch timeout"),
    126: _do("RESTART_APP", _SEE_CATALOG),
    159: _do("CHECK_UVM", _SEE_CATALOG),
    # Hardware: memory, buses, engines, links, firmware.
    46: _hw("GPU stopped processing"),
    48: _do("WORKFLOW_XID_48", "double bit ECC error (uncorrectable memory error)"),
    54: _do("CHECK_MECHANICALS", _SEE_CATALOG),
    56: _hw("display engine error"),
    57: _hw("error programming video memory interface"),
    58: _hw("unstable video memory interface detected"),
    62: _hw("internal micro-controller halt"),
    63: _do("IGNORE", "ECC page retirement or row remapping recording event"),
    64: _hw("ECC page retirement or row remapper recording failure"),
    68: _hw("NVDEC0 exception (video decoder)"),
    69: _hw("graphics engine class error"),
    70: _hw("CE3 copy engine error"),
    71: _hw("CE4 copy engine error"),
    72: _hw("CE5 copy engine error"),
    73: _hw("NVENC2 error (video encoder)"),
    74: _do("WORKFLOW_NVLINK_ERR", "NVLink error"),
    75: _hw("CE6 copy engine error"),
    76: _hw("CE7 copy engine error"),
    77: _hw("CE8 copy engine error"),
    79: _do("RESTART_BM", "GPU has fallen off the bus"),
    80: _hw("corrupted data sent to GPU"),
    81: _do("CONTACT_SUPPORT", "VGA subsystem error"),
    82: _hw("NVJPG0 error (JPEG decoder)"),
    83: _hw("NVDEC1 error (video decoder)"),
    84: _hw("NVDEC2 error (video decoder)"),
    85: _hw("CE9 copy engine error"),
    86: _hw("OFA exception (optical flow accelerator)"),
    88: _hw("NVDEC3 error (video decoder)"),
    89: _hw("NVDEC4 error (video decoder)"),
    92: _do("IGNORE", "high single-bit ECC error rate"),
    94: _do(
        "RESTART_APP", "contained ECC error (row remapping pending; the affected application died)"
    ),
    95: _do("RESET_GPU", "uncontained ECC error (reset the GPU)"),
    96: _hw("NVDEC5 error (video decoder)"),
    97: _hw("NVDEC6 error (video decoder)"),
    98: _hw("NVDEC7 error (video decoder)"),
    99: _hw("NVJPG1 error (JPEG decoder)"),
    100: _hw("NVJPG2 error (JPEG decoder)"),
    101: _hw("NVJPG3 error (JPEG decoder)"),
    102: _hw("NVJPG4 error (JPEG decoder)"),
    103: _hw("NVJPG5 error (JPEG decoder)"),
    104: _hw("NVJPG6 error (JPEG decoder)"),
    105: _hw("NVJPG7 error (JPEG decoder)"),
    110: _do("RESET_GPU", "security fault error"),
    111: _hw("display bundle error event"),
    112: _hw("display supervisor error"),
    113: _hw("DisplayPort link training error"),
    114: _hw("display pipeline underflow error"),
    115: _hw("display core channel error"),
    116: _hw("display window channel error"),
    117: _hw("display cursor channel error"),
    118: _hw("display pixel pipeline error"),
    119: _do("RESET_GPU", "GSP RPC timeout (the GPU's system processor stopped answering)"),
    120: _do("RESET_GPU", "GSP error (the GPU's system processor reported an error)"),
    121: _do("IGNORE", "C2C link error (chip-to-chip link)"),
    122: _hw("SPI PMU RPC read failure"),
    123: _hw("SPI PMU RPC write failure"),
    124: _hw("SPI PMU RPC erase failure"),
    125: _do("CONTACT_SUPPORT", "InfoROM file system failure"),
    136: _do("RESET_GPU", _SEE_CATALOG),
    140: _do("RESET_GPU", "unrecovered ECC error"),
    143: _do("RESET_GPU", "GPU initialization failure"),
    # NVLink5 (Blackwell): the line names the unit and whether the link error was fatal.
    144: _do("WORKFLOW_NVLINK5_ERR", "NVLink error (SAW)"),
    145: _do("WORKFLOW_NVLINK5_ERR", "NVLink error (RLW)"),
    146: _do("WORKFLOW_NVLINK5_ERR", "NVLink error"),
    147: _do("WORKFLOW_NVLINK5_ERR", "NVLink error"),
    148: _do("WORKFLOW_NVLINK5_ERR", "NVLink error"),
    149: _do("WORKFLOW_NVLINK5_ERR", "NVLink error (NETIR)"),
    150: _do("WORKFLOW_NVLINK5_ERR", "NVLink error"),
    151: _do("RESTART_VM", _SEE_CATALOG),
    154: _do("XID_154", "GPU recovery action changed"),
    155: _do("RESET_GPU", _SEE_CATALOG),
    156: _do("RESET_GPU", _SEE_CATALOG),
    157: _do("CONTACT_SUPPORT", _SEE_CATALOG),
    158: _do("RESET_GPU", _SEE_CATALOG),
}

# XID 154 names the recovery action the GPU now needs: "... changed from 0x0 (None) to 0x1
# (GPU Reset Required)". These words in its line make it a failure.
XID_154_FAILS = ("Reset Required", "Reboot Required", "Drain")
