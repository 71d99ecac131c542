"""NVIDIA XIDs: what each one means and whether it points at the hardware.

Meanings follow NVIDIA's Xid catalog (docs.nvidia.com/deploy/xid-errors). "hardware" XIDs
make a node fail acceptance: the GPU, its memory, its links or its firmware need attention.
"application" XIDs are what a faulting CUDA program (or its cleanup) leaves in the log on a
healthy GPU; they are counted, never reported as failures. An XID missing from this table is
reported as a warning, so one added in a later driver is seen rather than dropped.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

Severity = Literal["hardware", "application"]


class XidInfo(NamedTuple):
    meaning: str
    severity: Severity


def _hw(meaning: str) -> XidInfo:
    return XidInfo(meaning, "hardware")


def _app(meaning: str) -> XidInfo:
    return XidInfo(meaning, "application")


XIDS: dict[int, XidInfo] = {
    # Raised by programs (bad memory access, illegal instruction, killed or hung kernels).
    8: _app("GPU stopped processing (channel idle timeout)"),
    13: _app("graphics engine exception (usually an illegal access in a CUDA kernel)"),
    31: _app("GPU memory page fault (usually an illegal address in the application)"),
    32: _app("invalid or corrupted push buffer stream"),
    38: _app("driver firmware error"),
    43: _app("GPU stopped processing (a user channel was reset after a fault)"),
    45: _app("preemptive cleanup after a previous error (the channel was torn down)"),
    109: _app("context switch timeout"),
    # Hardware: memory, buses, engines, links, firmware.
    48: _hw("double bit ECC error (uncorrectable memory error)"),
    56: _hw("display engine error"),
    57: _hw("error programming video memory interface"),
    58: _hw("unstable video memory interface detected"),
    62: _hw("internal micro-controller halt"),
    63: _hw("ECC page retirement or row remapping recording event"),
    64: _hw("ECC page retirement or row remapper recording failure"),
    68: _hw("NVDEC0 exception (video decoder)"),
    69: _hw("graphics engine class error"),
    70: _hw("CE3 copy engine error"),
    71: _hw("CE4 copy engine error"),
    72: _hw("CE5 copy engine error"),
    73: _hw("NVENC2 error (video encoder)"),
    74: _hw("NVLink error"),
    75: _hw("CE6 copy engine error"),
    76: _hw("CE7 copy engine error"),
    77: _hw("CE8 copy engine error"),
    79: _hw("GPU has fallen off the bus"),
    80: _hw("corrupted data sent to GPU"),
    81: _hw("VGA subsystem error"),
    82: _hw("NVJPG0 error (JPEG decoder)"),
    83: _hw("NVDEC1 error (video decoder)"),
    84: _hw("NVDEC2 error (video decoder)"),
    85: _hw("CE9 copy engine error"),
    86: _hw("OFA exception (optical flow accelerator)"),
    88: _hw("NVDEC3 error (video decoder)"),
    89: _hw("NVDEC4 error (video decoder)"),
    92: _hw("high single-bit ECC error rate"),
    94: _hw("contained ECC error (row remapping pending; the affected application died)"),
    95: _hw("uncontained ECC error (reset the GPU)"),
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
    110: _hw("security fault error"),
    111: _hw("display bundle error event"),
    112: _hw("display supervisor error"),
    113: _hw("DisplayPort link training error"),
    114: _hw("display pipeline underflow error"),
    115: _hw("display core channel error"),
    116: _hw("display window channel error"),
    117: _hw("display cursor channel error"),
    118: _hw("display pixel pipeline error"),
    119: _hw("GSP RPC timeout (the GPU's system processor stopped answering)"),
    120: _hw("GSP error (the GPU's system processor reported an error)"),
    121: _hw("C2C link error (chip-to-chip link)"),
    122: _hw("SPI PMU RPC read failure"),
    123: _hw("SPI PMU RPC write failure"),
    124: _hw("SPI PMU RPC erase failure"),
    125: _hw("InfoROM file system failure"),
    140: _hw("unrecovered ECC error"),
    143: _hw("GPU initialization failure"),
}

# Row-remapping events: once the GPU has been reset the remap is in place and the GPU shows
# no pending or failed remap, so the XID is history rather than a fault (a warning then).
ROW_REMAP_XIDS = frozenset({63, 94})
