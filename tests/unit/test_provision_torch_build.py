"""Which CUDA build of torch provision picks for a driver's CUDA version."""

from __future__ import annotations

import pytest

from dcctl.node.provision.torch_build import choose_build, parse_cuda


@pytest.mark.parametrize(
    ("cuda", "build"),
    [
        ("11.8", "cu118"),
        ("12.0", "cu118"),  # no cu120 build: the newest older one
        ("12.1", "cu121"),
        ("12.3", "cu121"),
        ("12.4", "cu124"),
        ("12.5", "cu124"),
        ("12.6", "cu126"),
        ("12.7", "cu126"),
        ("12.8", "cu128"),
        ("12.9", "cu129"),
        ("13.0", "cu130"),
        ("13.1", "cu130"),
        ("14.2", "cu130"),  # newer than any build: the newest build runs on it
    ],
)
def test_the_newest_build_not_newer_than_the_driver(cuda: str, build: str) -> None:
    choice = choose_build(True, cuda)
    assert choice.build == build
    assert choice.reason == f"the driver's CUDA {cuda} runs torch's {build} build"


def test_no_driver_is_the_cpu_build() -> None:
    assert choose_build(False, None) == ("cpu", "no NVIDIA driver: the CPU build of torch")


@pytest.mark.parametrize("cuda", ["11.7", "11.0", "10.2"])
def test_a_driver_older_than_every_build_has_no_build_and_says_why(cuda: str) -> None:
    choice = choose_build(True, cuda)
    assert choice.build is None
    assert choice.reason.startswith(f"the driver's CUDA {cuda} is older than the oldest CUDA")
    assert "cu118 needs 11.8" in choice.reason and "update the NVIDIA driver" in choice.reason


def test_a_driver_whose_cuda_cannot_be_read_has_no_build() -> None:
    choice = choose_build(True, None)
    assert choice.build is None and "could not be read" in choice.reason


@pytest.mark.parametrize(
    ("text", "parsed"), [("12.4", (12, 4)), ("13.0.1", (13, 0)), ("12", None), ("x.y", None)]
)
def test_parse_cuda(text: str, parsed: tuple[int, int] | None) -> None:
    assert parse_cuda(text) == parsed
