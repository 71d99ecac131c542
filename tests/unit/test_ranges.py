"""Host range expansion: what a name like `gpu[001:016]` stands for."""

from __future__ import annotations

import pytest

from dcctl.errors import InputError
from dcctl.inventory.ranges import (
    MAX_EXPANSION,
    HostRangeError,
    expand_host_range,
    has_host_range,
)


def test_name_without_brackets_is_itself() -> None:
    assert expand_host_range("gpu001.rack1.example.com") == ["gpu001.rack1.example.com"]


def test_zero_padding_is_kept_as_written() -> None:
    names = expand_host_range("gpu[001:016].rack1.example.com")
    assert len(names) == 16
    assert names[0] == "gpu001.rack1.example.com"
    assert names[9] == "gpu010.rack1.example.com"
    assert names[-1] == "gpu016.rack1.example.com"


def test_unpadded_range_is_not_padded() -> None:
    assert expand_host_range("node[8:11]") == ["node8", "node9", "node10", "node11"]


def test_stride() -> None:
    assert expand_host_range("node[1:10:2]") == ["node1", "node3", "node5", "node7", "node9"]


def test_padded_stride() -> None:
    assert expand_host_range("n[00:10:5]") == ["n00", "n05", "n10"]


def test_letters() -> None:
    assert expand_host_range("rack[a:f]") == [f"rack{c}" for c in "abcdef"]


def test_uppercase_letters_with_stride() -> None:
    assert expand_host_range("[A:E:2]x") == ["Ax", "Cx", "Ex"]


def test_single_value_range() -> None:
    assert expand_host_range("gpu[07:07]") == ["gpu07"]


def test_several_ranges_give_the_cartesian_product_leftmost_slowest() -> None:
    assert expand_host_range("r[1:2]n[a:b].dc") == ["r1na.dc", "r1nb.dc", "r2na.dc", "r2nb.dc"]


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("gpu[5:1]", "start 5 is after end 1"),
        ("gpu[f:a]", "start f is after end a"),
        ("gpu[01:x]", "bounds '01' and 'x' must both be numbers or both single letters"),
        ("gpu[01:05", "'[' is never closed"),
        ("gpu01:05]", "']' without a matching '['"),
        ("gpu[[1:2]]", "ranges cannot be nested"),
        ("gpu[1]", "'[1]' is not [start:end] or [start:end:step]"),
        ("gpu[1:2:3:4]", "'[1:2:3:4]' is not [start:end] or [start:end:step]"),
        ("gpu[:5]", "bounds '' and '5' must both be numbers or both single letters"),
        ("gpu[1:9:0]", "step '0' is not a positive integer"),
        ("gpu[1:9:x]", "step 'x' is not a positive integer"),
        ("gpu[01:100]", "zero-padded bounds 01 and 100 differ in width"),
        ("gpu[a:F]", "letters a and F differ in case"),
        ("gpu[aa:bb]", "bounds 'aa' and 'bb' must both be numbers or both single letters"),
    ],
)
def test_malformed_range_is_an_input_error(pattern: str, reason: str) -> None:
    with pytest.raises(InputError) as caught:
        expand_host_range(pattern)
    assert str(caught.value) == f"{pattern}: bad host range: {reason}"
    assert isinstance(caught.value, HostRangeError)
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    ("pattern", "count"),
    [
        ("n[0:999]x[0:999]", "1000000"),
        ("node[1:1000000000]", "1000000000"),  # once a MemoryError: built, then counted
        ("node[0:999999999999999999]", "1000000000000000000"),
        ("r[1:100000]n[1:100000]", "10000000000"),
    ],
)
def test_huge_expansion_is_refused_before_building_it(pattern: str, count: str) -> None:
    with pytest.raises(InputError) as caught:
        expand_host_range(pattern)
    assert caught.value.reason == f"expands to {count} names, more than {MAX_EXPANSION:,}"


def test_largest_expansion_allowed_is_the_host_limit() -> None:
    assert len(expand_host_range(f"n[1:{MAX_EXPANSION}]")) == MAX_EXPANSION == 100_000


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("n[1:" + "9" * 19 + "]", "'9999999999999999999' has more than 18 digits"),
        ("n[1:" + "9" * 5000 + "]", "'99999999999999999999...' has more than 18 digits"),
        ("n[1:9:" + "1" * 5000 + "]", "'11111111111111111111...' has more than 18 digits"),
        # Leading zeros count: int() refuses 4,300 digits, zeros or not.
        ("n[" + "0" * 5000 + "1:2]", "'00000000000000000000...' has more than 18 digits"),
        ("n[1:2:" + "0" * 5000 + "1]", "'00000000000000000000...' has more than 18 digits"),
        ("n[0" + "0" * 18 + ":1]", "'0000000000000000000' has more than 18 digits"),
        ("n[1:²]", "bounds '1' and '²' must both be numbers or both single letters"),
        # Arabic-Indic one and nine: digits to str.isdigit, but host names stay ASCII.
        (
            "n[\u0661:\u0669]",
            "bounds '\u0661' and '\u0669' must both be numbers or both single letters",
        ),
    ],
)
def test_numbers_python_cannot_read_are_range_errors(pattern: str, reason: str) -> None:
    # Each was a ValueError traceback: int() refuses superscripts and > 4300 digits.
    with pytest.raises(HostRangeError) as caught:
        expand_host_range(pattern)
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("node[01:08]", True),
        ("node[1:9:2].dc", True),
        ("node0[12]", False),  # a glob character class, not a range
        ("node01", False),
        ("gpu*", False),
    ],
)
def test_has_host_range_tells_ranges_from_glob_classes(text: str, expected: bool) -> None:
    assert has_host_range(text) is expected


def test_long_pattern_is_shown_cut_in_the_message() -> None:
    pattern = "n" * 100_000 + "[1:2:x]"
    with pytest.raises(HostRangeError) as caught:
        expand_host_range(pattern)
    assert str(caught.value) == (
        f"{'n' * 60}... (100,007 characters): bad host range: step 'x' is not a positive integer"
    )


def test_long_bounds_are_shown_cut_in_the_message() -> None:
    with pytest.raises(HostRangeError) as caught:
        expand_host_range("n[" + "x" * 100_000 + ":y]")
    assert caught.value.reason == (
        f"bounds '{'x' * 60}... (100,000 characters)' and 'y' must both be numbers or both "
        "single letters"
    )
