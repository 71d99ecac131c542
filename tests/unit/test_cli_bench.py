"""`dcctl bench` options: GEMM sizes, the allreduce sweep, and the time each host is given."""

from __future__ import annotations

import pytest
import typer

from dcctl.cli.bench import budgets, parse_size, parse_sweep


def test_size_is_square_or_m_n_k() -> None:
    assert parse_size("8192") == {"m": 8192, "n": 8192, "k": 8192}
    assert parse_size("4096,8192,1024") == {"m": 4096, "n": 8192, "k": 1024}
    assert parse_size(None) == {}


@pytest.mark.parametrize("text", ["0", "8192,8192", "1,2,x", "70000", "-5", ""])
def test_bad_size_is_refused(text: str) -> None:
    with pytest.raises(typer.BadParameter, match="expected N or M,N,K"):
        parse_size(text)


def test_sweep_in_binary_units() -> None:
    assert parse_sweep("1K:8G") == {"min_bytes": 1024, "max_bytes": 8 << 30, "factor": 2}
    assert parse_sweep("64M:4G:4") == {"min_bytes": 64 << 20, "max_bytes": 4 << 30, "factor": 4}
    assert parse_sweep("4096:65536") == {"min_bytes": 4096, "max_bytes": 65536, "factor": 2}


@pytest.mark.parametrize("text", ["8G:1K", "1K:8G:1", "1K", "1K:2T", "0:1K", "6:64", "a:b"])
def test_bad_sweep_is_refused(text: str) -> None:
    with pytest.raises(typer.BadParameter, match="expected"):
        parse_sweep(text)


def test_budgets_grow_with_dtypes_and_the_soak() -> None:
    quick = budgets(["gemm", "fio"], True, 1, 0.0)
    assert set(quick) == {"gemm", "fio"}
    full = budgets(["gemm"], False, 5, 600.0)
    assert full["gemm"] > quick["gemm"] + 600
