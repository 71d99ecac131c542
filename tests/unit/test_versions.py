"""Version requirement parsing and numeric comparison."""

from __future__ import annotations

import pytest

from dcctl.evaluate.versions import (
    compare_versions,
    parse_requirement,
    parse_version,
    satisfies,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5.15", (5, 15)),
        ("6.1.0-18-amd64", (6, 1, 0)),
        ("5.15.0-101-generic", (5, 15, 0)),
        ("5.14.0-362.8.1.el9_3.x86_64", (5, 14, 0)),
        ("550.54.15", (550, 54, 15)),
        (" 12.4 ", (12, 4)),
    ],
)
def test_parse_version_numeric_prefix(text: str, expected: tuple[int, ...]) -> None:
    assert parse_version(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "v5.15", "-1"])
def test_parse_version_rejects_non_versions(text: str) -> None:
    with pytest.raises(ValueError, match="not a version"):
        parse_version(text)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("5.15", "5.9", 1),  # numeric, not lexicographic
        ("5.9", "5.15", -1),
        ("12.4", "12.4.0", 0),  # missing parts are zero
        ("6.1.0-18-amd64", "6.1", 0),
        ("550.54.15", "550.54.14", 1),
        ("10.0", "9.99", 1),
    ],
)
def test_compare_versions(a: str, b: str, expected: int) -> None:
    assert compare_versions(a, b) == expected


@pytest.mark.parametrize(
    ("version", "spec", "expected"),
    [
        ("6.1.0-18-amd64", ">=5.15", True),
        ("5.4.0-150-generic", ">=5.15", False),
        ("5.15.0-101-generic", ">=5.15", True),
        ("5.15.0", ">5.15", False),
        ("5.15.1", ">5.15", True),
        ("6.0", ">5", True),
        ("5.99", ">5", True),
        ("5.0", ">5", False),
        ("550.54.15", "<=550.54.15", True),
        ("550.54.16", "<=550.54.15", False),
        ("535.161.08", "<550", True),
        ("550.0", "<550", False),
        ("550.54.15", "==550.54.15", True),
        ("550.54.14", "==550.54.15", False),
        ("550.54.15", "!=550.54.15", False),
        ("550.54.14", "!=550.54.15", True),
        ("550.54", "550.54", True),  # bare means ==
        ("550.54.15", "550.54", False),  # == pads with zeros, as pip does
        ("550.54.15", "==550.*", True),
        ("555.42.02", "==550.*", False),
        ("555.42.02", "!=550.*", True),
        ("6.8.0", ">=5.15,<7", True),
        ("7.0.1", ">=5.15, <7", False),
        ("12.4", ">= 12.4", True),
    ],
)
def test_satisfies(version: str, spec: str, expected: bool) -> None:
    assert satisfies(version, spec) is expected


def test_numbers_from_yaml_are_accepted() -> None:
    # `cuda: 12.4` and `driver: 550` arrive as float / int from YAML.
    assert satisfies("12.4", 12.4) is True
    assert satisfies("12.6", 12.4) is False
    assert satisfies("550", 550) is True
    assert str(parse_requirement(12.4)) == "12.4"


def test_requirement_keeps_its_text() -> None:
    requirement = parse_requirement(">=5.15")
    assert str(requirement) == ">=5.15"
    assert [(c.op, c.version) for c in requirement.clauses] == [(">=", (5, 15))]


@pytest.mark.parametrize(
    "spec",
    ["", ">=", "=>5.15", "~=5.15", ">=abc", "5.15-rc1", ">=5.15,", "latest", ">=5..15"],
)
def test_invalid_requirement_is_a_clear_value_error(spec: str) -> None:
    with pytest.raises(ValueError, match="invalid version requirement"):
        parse_requirement(spec)


def test_wildcard_only_with_equality() -> None:
    with pytest.raises(ValueError, match=r"'\.\*' works only with == or !="):
        parse_requirement(">=550.*")


@pytest.mark.parametrize("spec", [True, None, ["5.15"]])
def test_non_string_requirement_rejected(spec: object) -> None:
    with pytest.raises(ValueError, match="invalid version requirement"):
        parse_requirement(spec)  # type: ignore[arg-type]


def test_unparseable_observed_version_raises() -> None:
    with pytest.raises(ValueError, match="not a version"):
        parse_requirement(">=5.15").satisfied_by("unknown")
