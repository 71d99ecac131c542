"""Which CUDA build of torch the node's driver can run, and the pip index that serves it.

A CUDA build of torch needs a driver whose CUDA version is at least the build's, so the build
is the newest one not newer than the driver's CUDA (read from NVML, else libcuda). Below the
oldest build (cu118) there is nothing to choose: torch 2.2 and later ship no CUDA 11.7 build,
and a CPU build on a GPU node would pass provisioning and then fail every benchmark, so the
step fails and says to update the driver or pin torch through a mirror or a wheelhouse.
"""

from __future__ import annotations

from typing import NamedTuple

# (build, CUDA version it needs), oldest first: the builds download.pytorch.org serves for
# torch 2.x (each torch release serves a few of them; pip picks a release that has one).
CUDA_BUILDS: tuple[tuple[str, tuple[int, int]], ...] = (
    ("cu118", (11, 8)),
    ("cu121", (12, 1)),
    ("cu124", (12, 4)),
    ("cu126", (12, 6)),
    ("cu128", (12, 8)),
    ("cu129", (12, 9)),
    ("cu130", (13, 0)),
)
CPU_BUILD = "cpu"


class BuildChoice(NamedTuple):
    """The build (None when there is none to choose) and a line saying why."""

    build: str | None
    reason: str


def parse_cuda(version: str) -> tuple[int, int] | None:
    """'12.4' as (12, 4); None when it is not MAJOR.MINOR."""
    major, _, minor = version.partition(".")
    if not (major.isdigit() and minor.split(".")[0].isdigit()):
        return None
    return int(major), int(minor.split(".")[0])


def choose_build(driver_loaded: bool, cuda: str | None) -> BuildChoice:
    """The torch build for a node with this driver (`cuda`: the driver's CUDA, "12.4")."""
    if not driver_loaded:
        return BuildChoice(CPU_BUILD, "no NVIDIA driver: the CPU build of torch")
    found = parse_cuda(cuda) if cuda is not None else None
    if found is None:
        return BuildChoice(
            None,
            "the NVIDIA driver is loaded but its CUDA version could not be read (NVML and "
            "libcuda failed): fix the driver, or set pip_index_url or wheelhouse",
        )
    usable = [build for build, needs in CUDA_BUILDS if needs <= found]
    if not usable:
        oldest, needs = CUDA_BUILDS[0]
        return BuildChoice(
            None,
            f"the driver's CUDA {cuda} is older than the oldest CUDA build of torch "
            f"({oldest} needs {needs[0]}.{needs[1]}): update the NVIDIA driver, or set "
            "pip_index_url or wheelhouse and pin torch_spec",
        )
    return BuildChoice(usable[-1], f"the driver's CUDA {cuda} runs torch's {usable[-1]} build")


def read_driver_cuda() -> tuple[bool, str | None]:
    """(whether the NVIDIA driver is loaded, the driver's CUDA version or None)."""
    # Imported here: the GPU probe modules load only when the task reads the driver.
    from dcctl.node.probes.gpu import collect_gpu

    gpu = collect_gpu()
    return gpu.get("gpu_source") != "none", gpu.get("cuda")
