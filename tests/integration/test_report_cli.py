"""`dcctl report` on runs that the real `dcctl check` stored, through Typer's real parsing.

Two runs of three hosts (two on this machine, one that refuses connections) are made once per
module, so each test costs only the report it renders.
"""

from __future__ import annotations

import json
import shutil
import stat
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import typer
from cli_runner import load_schema, run_dcctl
from typer.testing import CliRunner

from dcctl.cli import main
from dcctl.cli import report as report_cli
from dcctl.errors import InputError
from dcctl.report.report_files import report_option, save_report, write_report
from dcctl.results.load import find_run, load_run

_INVENTORY = """\
all:
  hosts:
    alpha:
      connection: local
      python: {python}
      expect: {alpha}
    beta:
      connection: local
      python: {python}
      expect: {{kernel: '>=3.0'}}
    gone:
      host: 127.0.0.1
      port: 1
"""
# alpha fails its driver expectation (no NVIDIA driver here); beta passes; gone is unreachable.
_ALPHA = "{kernel: '>=3.0', min_memory_gb: 1, driver: '>=550'}"


def _app() -> typer.Typer:
    """The real global options callback with the report command, whether or not the
    installed `dcctl` has it registered yet."""
    app = typer.Typer(pretty_exceptions_enable=False, add_completion=False, rich_markup_mode=None)
    app.callback()(main.main)
    app.command(name="report")(report_cli.report)
    return app


def _report(state: Path, *args: str) -> Any:
    return CliRunner().invoke(_app(), ["--state-dir", str(state), *args], env={"COLUMNS": "200"})


def _check(tmp: Path, state: Path) -> str:
    inventory = tmp / "inv.yaml"
    inventory.write_text(_INVENTORY.format(python=sys.executable, alpha=_ALPHA))
    result = run_dcctl(
        ["-i", str(inventory), "--state-dir", str(state), "--json", "--connect-timeout", "2",
         "check", "--report", str(tmp / "check.html")],
        home=tmp,
    )  # fmt: skip
    assert result.code == 1, result.stderr
    return str(result.json()["run_id"])


def _before_the_repair(state: Path, after: str) -> str:
    """The same run as it was before alpha broke: a copy of the real run without alpha's
    driver failure, under an earlier id (one `check` less keeps the module fast)."""
    before = "20000101T000000Z-check-0bef"
    shutil.copytree(state / "runs" / after, state / "runs" / before)
    document = _stored(state, after)
    alpha = next(host for host in document["hosts"] if host["name"] == "alpha")
    alpha["results"] = [r for r in alpha["results"] if r["id"] != "driver.version"]
    alpha["status"] = "passed"
    document["summary"].update(passed=document["summary"]["passed"] + 1, failed=0)
    document.update(run_id=before, status="error")
    jsonschema.validate(document, load_schema())
    (state / "runs" / before / "run.json").write_text(json.dumps(document))
    return before


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """The state dir, the id of the run before, and of the run after (the latest)."""
    tmp = tmp_path_factory.mktemp("report")
    state = tmp / "state"
    after = _check(tmp, state)
    return state, _before_the_repair(state, after), after


def _stored(state: Path, run_id: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((state / "runs" / run_id / "run.json").read_text())
    return document


def _one_line(result: Any) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return str(lines[0])


def test_junit_of_the_latest_run_parses_with_a_testcase_per_host_and_check(
    runs: tuple[Path, str, str], tmp_path: Path
) -> None:
    state, _, after = runs
    out = tmp_path / "r.xml"
    result = _report(state, "report", "latest", "-o", str(out))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert str(out) in result.stderr and after in result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["r.xml"]  # no temp file left
    root = ET.fromstring(out.read_text())
    suites = {suite.get("name"): suite for suite in root.iter("testsuite")}
    document = _stored(state, after)
    for host in document["hosts"]:
        cases = suites[host["name"]].findall("testcase")
        if host["error"] is None:
            assert len(cases) == len(host["results"])
    alpha = {str(case.get("name")): case for case in suites["alpha"].findall("testcase")}
    assert any("driver.version" in name and case.find("failure") is not None
               for name, case in alpha.items())  # fmt: skip
    assert suites["gone"].find("testcase/error") is not None  # unreachable: an error


def test_markdown_has_a_row_per_host_and_check(runs: tuple[Path, str, str]) -> None:
    state, _, after = runs
    result = _report(state, "report", after[:20], "--format", "markdown")
    assert result.exit_code == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("|")]
    for host in _stored(state, after)["hosts"]:
        for check in host["results"]:
            assert any(host["name"] in row and check["id"] in row for row in rows), (
                host["name"],
                check["id"],
            )
    assert any("gone" in row for row in rows)


def test_json_is_the_stored_run_document(runs: tuple[Path, str, str]) -> None:
    state, before, _ = runs
    result = _report(state, "--json", "report", before)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == _stored(state, before)


def test_a_path_to_a_run_json_is_a_run_too(runs: tuple[Path, str, str], tmp_path: Path) -> None:
    state, before, _ = runs
    out = tmp_path / "copy.json"
    result = _report(state, "report", str(state / "runs" / before / "run.json"), "-o", str(out))
    assert result.exit_code == 0, result.stderr
    assert json.loads(out.read_text()) == _stored(state, before)
    assert stat.S_IMODE(out.stat().st_mode) & 0o044  # shared like any file the user writes


def test_the_table_is_the_console_view(runs: tuple[Path, str, str]) -> None:
    state, _, after = runs
    result = _report(state, "-v", "report")
    assert result.exit_code == 0, result.stderr  # the run failed; the report did not
    assert "alpha" in result.stdout and "unreachable" in result.stdout
    assert "driver.version" in result.stdout  # -v: each host's checks
    assert f"run {after} in" in result.stdout


def test_against_compares_after_with_before(runs: tuple[Path, str, str], tmp_path: Path) -> None:
    state, before, after = runs
    result = _report(state, "report", after, "--against", before, "--format", "json")
    assert result.exit_code == 0, result.stderr
    text = result.stdout
    json.loads(text)
    assert "alpha" in text and "driver.version" in text  # a finding that appeared
    table = _report(state, "report", after, "--against", before)
    assert table.exit_code == 0, table.stderr
    assert "Host status changes" in table.stdout
    status_row = next(line for line in table.stdout.splitlines() if "alpha" in line)
    assert "passed" in status_row and "failed" in status_row
    markdown = _report(state, "report", after, "--against", before, "-o", str(tmp_path / "c.md"))
    assert markdown.exit_code == 0, markdown.stderr
    assert "| alpha |" in (tmp_path / "c.md").read_text()


def test_against_refuses_junit(runs: tuple[Path, str, str], tmp_path: Path) -> None:
    state, before, after = runs
    result = _report(state, "report", after, "--against", before, "-o", str(tmp_path / "c.xml"))
    assert result.exit_code == 2
    assert ".md or .json" in _one_line(result)


def test_a_killed_run_is_rebuilt_from_its_host_files(
    runs: tuple[Path, str, str], tmp_path: Path
) -> None:
    state, _, after = runs
    killed_state = tmp_path / "state"
    killed_id = "29991231T235959Z-check-dead"  # newer than any: it is `latest`
    shutil.copytree(state / "runs" / after, killed_state / "runs" / killed_id)
    shutil.copytree(state / "runs" / after, killed_state / "runs" / after)
    (killed_state / "runs" / killed_id / "run.json").unlink()
    result = _report(killed_state, "--json", "report")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    jsonschema.validate(document, load_schema())
    assert (document["run_id"], document["status"]) == (killed_id, "interrupted")
    assert sorted(h["name"] for h in document["hosts"]) == ["alpha", "beta", "gone"]
    assert document["summary"] == _stored(state, after)["summary"]
    assert "no run.json" in _one_line(result) and killed_id in result.stderr
    table = _report(killed_state, "report", killed_id)
    assert table.exit_code == 0 and "interrupted" in table.stdout


def _corrupt(state: Path) -> str:
    run_dir = state / "runs" / "20260101T000000Z-check-0bad"
    (run_dir / "hosts").mkdir(parents=True)
    (run_dir / "run.json").write_text('{"schema": "dcctl.run/1", "hosts": [')
    return run_dir.name


def _foreign(state: Path) -> str:
    run_dir = state / "runs" / "20260101T000000Z-check-0f0f"
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text('{"schema": "dcctl.run/9", "hosts": []}')
    return run_dir.name


BAD_REFS: dict[str, tuple[Callable[[Path], str], str]] = {
    "empty state dir": (lambda state: "latest", "no runs in"),
    "unknown id": (lambda state: "20250101T", "no run '20250101T'"),
    "ambiguous prefix": (lambda state: _ambiguous(state), "matches 2 runs"),
    "corrupt run.json": (_corrupt, "not valid JSON"),
    "newer schema": (_foreign, "newer dcctl"),
    "missing path": (lambda state: str(state / "nowhere" / "run.json"), "no such run"),
}


def _ambiguous(state: Path) -> str:
    for tail in ("aaaa", "aaab"):
        (state / "runs" / f"20260101T000000Z-check-{tail}" / "hosts").mkdir(parents=True)
    return "20260101T000000Z-check-aa"


@pytest.mark.parametrize("case", sorted(BAD_REFS))
def test_a_run_that_cannot_be_read_is_one_line_exit_2(tmp_path: Path, case: str) -> None:
    make_ref, expected = BAD_REFS[case]
    state = tmp_path / "state"
    state.mkdir()
    result = _report(state, "report", make_ref(state))
    assert result.exit_code == 2
    line = _one_line(result)
    assert expected in line
    assert str(state) in line


def test_an_unwritable_output_is_exit_4_and_leaves_nothing(
    runs: tuple[Path, str, str], tmp_path: Path
) -> None:
    state, _, _ = runs
    out = tmp_path / "missing-dir" / "r.md"
    result = _report(state, "report", "-o", str(out))
    assert result.exit_code == 4
    assert "not saved" in _one_line(result)
    assert not out.parent.exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-o", "r.txt"], ".xml (JUnit)"),
        (["--format", "pdf"], "--format 'pdf'"),
        (["--format", "table", "-o", "r.md"], "for the terminal"),
    ],
)
def test_a_bad_format_is_one_line_exit_2(
    runs: tuple[Path, str, str], tmp_path: Path, args: list[str], expected: str
) -> None:
    state, _, _ = runs
    result = _report(state, "report", *[str(tmp_path / a) if a.startswith("r.") else a
                                        for a in args])  # fmt: skip
    assert result.exit_code == 2
    assert expected in _one_line(result)
    assert list(tmp_path.iterdir()) == []


def test_load_run_and_write_report_from_python(runs: tuple[Path, str, str], tmp_path: Path) -> None:
    state, before, after = runs
    assert load_run(state, "latest")["run_id"] == after
    assert find_run(state, before).notice is None
    document = load_run(state, before)
    write_report(document, tmp_path / "r.md")
    assert "alpha" in (tmp_path / "r.md").read_text()
    with pytest.raises(InputError, match=r"\.xml \(JUnit\)"):
        write_report(document, tmp_path / "r.pdf")
    # --report's writer: an unwritable path is one error line and False (the caller's exit 4).
    assert save_report(document, None)
    assert not save_report(document, tmp_path / "no" / "r.xml")


_REPORT_OPTION = report_option()


def test_the_report_option_refuses_an_unknown_extension_before_anything_runs() -> None:
    ran: list[Path | None] = []
    app = typer.Typer(add_completion=False, rich_markup_mode=None)

    @app.command()
    def command(report: Path | None = _REPORT_OPTION) -> None:
        ran.append(report)

    assert CliRunner().invoke(app, ["--report", "r.pdf"]).exit_code == 2
    assert CliRunner().invoke(app, ["--report", "r.XML"]).exit_code == 0
    assert CliRunner().invoke(app, ["--report", "r.html"]).exit_code == 0
    assert ran == [Path("r.XML"), Path("r.html")]


def test_check_report_html_writes_the_page_as_the_run_ends(runs: tuple[Path, str, str]) -> None:
    state, _, after = runs
    page = (state.parent / "check.html").read_text()
    assert after in page and 'data-host="gone"' in page
    # The inventory as the run read it, kept in the run directory, shown as used.
    kept = (state / "runs" / after / "sources" / "inventory.yaml").read_text()
    assert (
        "port: 1" in kept
        and stat.S_IMODE((state / "runs" / after / "sources" / "inventory.yaml").stat().st_mode)
        == 0o600
    )
    assert "port: 1" in page.split('id="sources"')[1]


def test_dcctl_has_the_report_command(tmp_path: Path) -> None:
    """The registered command, in a real process: `dcctl report --help` shows its examples."""
    result = run_dcctl(["report", "--help"], home=tmp_path)
    assert result.code == 0, result.stderr
    assert "--against" in result.stdout and "Examples" in result.stdout


def test_html_of_a_run_by_extension_and_by_format(
    runs: tuple[Path, str, str], tmp_path: Path
) -> None:
    """-o r.html chooses the page; --format html writes the same page to stdout. The page names
    the run, every host, and the unreachable one as such."""
    state, _, after = runs
    out = tmp_path / "r.html"
    result = _report(state, "report", after, "-o", str(out))
    assert result.exit_code == 0, result.stderr
    assert f"HTML report of run {after}" in result.stderr
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and after in page
    for host in ("alpha", "beta", "gone"):
        assert f'data-host="{host}"' in page
    assert 'class="host-failed" data-host="alpha"' in page
    assert "unreachable" in page.split('data-host="gone"')[1].split("</tr>")[0]
    printed = _report(state, "report", after, "--format", "html")
    assert printed.exit_code == 0, printed.stderr
    # The same page but for the moment it was rendered, in its footer.
    strip = lambda text: text.split("<footer>")[0]  # noqa: E731
    assert strip(printed.stdout) == strip(page)


def test_a_comparison_is_not_an_html_page(runs: tuple[Path, str, str], tmp_path: Path) -> None:
    state, before, after = runs
    result = _report(state, "report", after, "--against", before, "--format", "html")
    assert result.exit_code == 2
    assert "renders as table, json, markdown" in _one_line(result)
    result = _report(state, "report", after, "--against", before, "-o", str(tmp_path / "c.html"))
    assert result.exit_code == 2
    assert "written as .md or .json" in _one_line(result)
    assert list(tmp_path.iterdir()) == []
