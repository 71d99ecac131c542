"""A run document as JUnit XML, the format CI dashboards read: a testsuite per host, a testcase
per result (check or benchmark), and a testsuite "cluster" for the jobs that span nodes.

JUnit has pass, failure, error and skipped; a warning passes (it does not fail a CI job) with
its message in <system-out>, where a dashboard still shows it. A host that could not be
evaluated gets a testcase "host" with an <error>, so an unreachable node is an error in CI, not
a suite that silently has no tests.

Pure: a document in, a string out. Every string from a node (host names, messages, observed
values) may hold anything, so text goes through `xml_text` first: XML 1.0 cannot carry most
control characters at all, even escaped, and ElementTree would write them raw.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from dcctl.report.document_view import as_list, escaped_char, gpu_index, hosts_label

# The characters XML 1.0 allows (https://www.w3.org/TR/xml/#charsets); everything else, lone
# surrogates from undecodable bytes included, is shown as an escape a person can still read.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
TIMESTAMP = "%Y-%m-%dT%H:%M:%SZ"


def xml_text(value: Any) -> str:
    """`value` as text XML 1.0 can hold: forbidden characters become `\\x1b`-style escapes."""
    text = value if isinstance(value, str) else str(value)
    return _NOT_XML.sub(escaped_char, text.replace("\r\n", "\n"))


def render_junit(document: Mapping[str, Any]) -> str:
    """The run as a JUnit XML document (UTF-8, with its XML declaration)."""
    root = ET.Element("testsuites", name=xml_text(f"dcctl {document.get('run_id', '')}"))
    default_step = str(document.get("command") or "run")
    for host in as_list(document.get("hosts")):
        if isinstance(host, Mapping):
            root.append(_host_suite(host, document, default_step))
    cluster = [r for r in as_list(document.get("cluster_results")) if isinstance(r, Mapping)]
    if cluster:
        root.append(_cluster_suite(cluster, document, default_step))
    totals: Counter[str] = Counter()
    for suite in root:
        for key in ("tests", "failures", "errors"):
            totals[key] += int(suite.get(key, "0"))
    # <testsuites> has no `skipped` attribute in the Jenkins xUnit schema: only the suites do.
    for key in ("tests", "failures", "errors"):
        root.set(key, str(totals[key]))
    root.set("time", _seconds(run_seconds(document)))
    ET.indent(root)
    body = ET.tostring(root, encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{body}\n'


def run_seconds(document: Mapping[str, Any]) -> float | None:
    """The run's wall time from its timestamps (hosts run side by side: their times overlap)."""
    try:
        started = datetime.strptime(str(document.get("started_at")), TIMESTAMP)
        finished = datetime.strptime(str(document.get("finished_at")), TIMESTAMP)
    except ValueError:
        return None
    return (finished - started).total_seconds()


def _host_suite(
    host: Mapping[str, Any], document: Mapping[str, Any], default_step: str
) -> ET.Element:
    name = str(host.get("name", "?"))
    suite = _suite(name, document)
    suite.set("hostname", xml_text(host.get("address") or name))
    suite.set("time", _seconds(host.get("duration_s")))
    _properties(suite, {"status": host.get("status"), "address": host.get("address")})
    names: Counter[str] = Counter()
    for result in as_list(host.get("results")):
        if isinstance(result, Mapping):
            suite.append(
                _result_case(result, f"dcctl.{name}", _case_name(result, default_step), names)
            )
    error = host.get("error")
    if isinstance(error, Mapping):
        case = ET.SubElement(suite, "testcase", classname=xml_text(f"dcctl.{name}"), name="host")
        kind = str(error.get("kind") or "error")
        ET.SubElement(
            case, "error", type=xml_text(kind), message=xml_text(error.get("message", ""))
        )
    return _counted(suite)


def _cluster_suite(
    results: Sequence[Mapping[str, Any]], document: Mapping[str, Any], default_step: str
) -> ET.Element:
    suite = _suite("cluster", document)
    suite.set("time", "0")
    names: Counter[str] = Counter()
    for result in results:
        hosts = hosts_label(result.get("hosts"))
        name = _case_name(result, default_step) + (f" [{hosts}]" if hosts else "")
        suite.append(_result_case(result, "dcctl.cluster", name, names))
    return _counted(suite)


def _suite(name: str, document: Mapping[str, Any]) -> ET.Element:
    suite = ET.Element("testsuite", name=xml_text(name))
    if document.get("started_at"):
        suite.set("timestamp", xml_text(document["started_at"]))
    return suite


def _properties(suite: ET.Element, values: Mapping[str, Any]) -> None:
    shown = {key: value for key, value in values.items() if value is not None}
    if shown:
        properties = ET.SubElement(suite, "properties")
        for key, value in shown.items():
            ET.SubElement(properties, "property", name=key, value=xml_text(value))


def _case_name(result: Mapping[str, Any], default_step: str) -> str:
    """ "check: gpu.ecc (GPU 3)": the step first, as a playbook's steps run the same checks."""
    name = f"{result.get('step') or default_step}: {result.get('id', '?')}"
    index = gpu_index(result)
    return name if index is None else f"{name} (GPU {index})"


def _result_case(
    result: Mapping[str, Any], classname: str, name: str, seen: Counter[str]
) -> ET.Element:
    # Two results of one check (two ranks' errors, say) would read as one test in a dashboard
    # that keys on the name: the second is numbered.
    seen[name] += 1
    if seen[name] > 1:
        name = f"{name} #{seen[name]}"
    case = ET.Element("testcase", classname=xml_text(classname), name=xml_text(name))
    status = str(result.get("status"))
    message = xml_text(result.get("message") or "")
    details = _details(result)
    if status == "fail":
        ET.SubElement(
            case, "failure", type=xml_text(result.get("id", "")), message=message
        ).text = details
    elif status == "skip":
        ET.SubElement(case, "skipped", message=message)
    elif status in ("pass", "warn"):
        prefix = "warning: " if status == "warn" else ""
        ET.SubElement(case, "system-out").text = f"{prefix}{details}"
    else:  # error, or a status this version does not know: not a pass either way
        kind = "error" if status == "error" else f"unknown status {status}"
        ET.SubElement(case, "error", type=xml_text(kind), message=message).text = details
    case.set("status", xml_text(status))
    return case


def _details(result: Mapping[str, Any]) -> str:
    """The message, then what was observed and expected: the body a CI page shows opened."""
    lines = [str(result.get("message") or "")]
    for key in ("observed", "expected"):
        if result.get(key) is not None:
            lines.append(f"{key}: {_json(result[key])}")
    return xml_text("\n".join(lines))


def _counted(suite: ET.Element) -> ET.Element:
    cases = suite.findall("testcase")
    counts = Counter(child.tag for case in cases for child in case)
    suite.set("tests", str(len(cases)))
    suite.set("failures", str(counts["failure"]))
    suite.set("errors", str(counts["error"]))
    suite.set("skipped", str(counts["skipped"]))
    return suite


def _seconds(value: Any) -> str:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
    return f"{max(float(value), 0.0):.3f}" if ok and value != float("inf") else "0.000"


def _json(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
