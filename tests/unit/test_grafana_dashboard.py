"""docs/grafana/eventrouter.json asks Prometheus only for what the processes export: every metric its queries
(and its template variables) name is a series that the gateway, a stream worker, a forwarder or `up`'s up.prom
exposes, every label it matches or groups by is one that series carries, rate() and increase() read counters,
histogram_quantile() reads buckets. The series come from the metrics classes' own registries, read back from
their exposition text as a scraper reads them: renaming a metric or a label breaks this test."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from eventrouter.stack import METRICS_FILE, Child, Stack
from forwarders.metrics import ForwarderMetrics
from producers.gateway_metrics import GatewayMetrics
from schemas import Topics
from schemas.runtime.histogram import BatchHistogram
from streams.metrics import WorkerMetrics

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana" / "eventrouter.json"
TARGET_LABELS = {"job", "instance"}  # Prometheus adds them to every series it scrapes
RANGES = {"[$__rate_interval]", "[$__range]"}
LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = {"and", "or", "unless", "bool"}
COUNTER_FUNCTIONS = {"rate", "irate", "increase"}
TOKEN = re.compile(r"""
    (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<range>\[[^\]]*\])
  | (?P<number>\d+(?:\.\d+)?(?:e[+-]?\d+)?)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<punct>=~|!~|!=|==|<=|>=|[-+*/%^<>=(){},])
  | (?P<space>\s+)
""", re.X)


@dataclass(frozen=True)
class Series:
    kind: str  # the type of the family it belongs to: counter, gauge, histogram
    labels: frozenset[str]


def _give_every_labelled_metric_a_series(owner: object) -> None:
    """A labelled metric shows its label names only once it has a series: give each of `owner`'s one."""
    for metric in vars(owner).values():
        if isinstance(metric, BatchHistogram):
            metric.observe_many(["x"] * len(metric.labelnames), [0.1])
        elif isinstance(metric, MetricWrapperBase) and metric._labelnames and not metric._labelvalues:
            metric.labels(*["x"] * len(metric._labelnames))


def _series(exposition: str) -> dict[str, Series]:
    out = {}
    for family in text_string_to_metric_families(exposition):
        assert family.samples, f"{family.name} has no series: the test did not give it one"
        for sample in family.samples:
            out[sample.name] = Series(family.type, frozenset(sample.labels) | TARGET_LABELS)
    return out


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Series]]:
    """Per process, every series name it exposes -> its type and label names."""
    registries: dict[str, CollectorRegistry] = {}
    for process, metrics in (("gateway", GatewayMetrics()), ("worker", WorkerMetrics()),
                             ("forwarder", ForwarderMetrics("amp"))):
        _give_every_labelled_metric_a_series(metrics)
        registries[process] = metrics.registry
    out = {process: _series(generate_latest(r).decode()) for process, r in registries.items()}
    folder = tmp_path_factory.mktemp("up")
    (folder / "c.yaml").write_text("pipelines: [{name: web, write_keys: [wk], integrations: [amp]}]\nintegrations: "
                                   "[{name: amp, kind: amplitude, playbook: 'starter:amplitude', connection: "
                                   "{api_key: '${K}'}}]\n")
    stack = Stack("127.0.0.1:9", Topics("t"), folder / "c.yaml", folder, gateway_port=None)
    stack.children.append(Child("forward-amp", process=None, log=None))  # type: ignore[arg-type]  # never started
    stack.write_metrics()
    out["up"] = _series((folder / METRICS_FILE).read_text())
    return out


@dataclass
class Query:
    """What one PromQL expression asks for: (metric, labels matched) per selector, the labels each grouping
    names with the metrics it groups, the metrics each function reads, its range selectors."""

    selectors: list[tuple[str, list[str]]] = field(default_factory=list)
    groupings: list[tuple[list[str], list[str]]] = field(default_factory=list)
    calls: list[tuple[str, list[str]]] = field(default_factory=list)
    ranges: list[str] = field(default_factory=list)


def _tokens(expr: str) -> list[tuple[str, str]]:
    out, at = [], 0
    while at < len(expr):
        match = TOKEN.match(expr, at)
        assert match, f"cannot read {expr[at:]!r} in {expr!r}"
        at = match.end()
        if match.lastgroup != "space":
            out.append((match.lastgroup or "", match.group()))
    return out


def _matching(tokens: list[tuple[str, str]], at: int) -> int:
    """The index of the parenthesis that closes (or opens) the one at `at`."""
    step = 1 if tokens[at][1] == "(" else -1
    depth, i = 0, at
    while 0 <= i < len(tokens):
        depth += {"(": 1, ")": -1}.get(tokens[i][1], 0) * step
        if depth == 0:
            return i
        i += step
    raise AssertionError(f"unbalanced parentheses in {' '.join(t for _k, t in tokens)}")


def parse(expr: str) -> Query:
    tokens, query = _tokens(expr), Query()
    metric_at: dict[int, str] = {}
    calls: list[tuple[str, int, int]] = []  # (function, its opening parenthesis, its closing one)
    label_lists: list[tuple[int, int]] = []  # (the keyword before the list, the list's closing parenthesis)
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        following = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        if kind == "range":
            query.ranges.append(text)
        elif kind == "ident" and text in LABEL_LISTS:
            end = _matching(tokens, i + 1)
            label_lists.append((i, end))
            i = end
        elif kind == "ident" and following == "(":
            calls.append((text, i + 1, _matching(tokens, i + 1)))
        elif kind == "ident" and following in {"by", "without"}:
            pass  # an aggregation, `sum by (l) (x)`: its labels and argument are read with the list
        elif kind == "ident" and text not in KEYWORDS:
            metric_at[i], labels = text, []
            if following == "{":
                i += 2
                while tokens[i][1] != "}":
                    if tokens[i][0] == "ident":
                        labels.append(tokens[i][1])
                    i += 1
            query.selectors.append((text, labels))
        i += 1

    def metrics_between(start: int, end: int) -> list[str]:
        return [m for at, m in metric_at.items() if start < at < end]

    query.calls = [(name, metrics_between(start, end)) for name, start, end in calls]
    for keyword, end in label_lists:
        names = [t for k, t in tokens[keyword + 1:end] if k == "ident"]
        if tokens[keyword][1] in {"by", "without"}:  # `sum by (l) (x)`, or `sum(x) by (l)`
            scope = (end + 1, _matching(tokens, end + 1)) if tokens[keyword - 1][0] == "ident" else \
                (_matching(tokens, keyword - 1), keyword - 1)
            query.groupings.append((names, metrics_between(*scope)))
        else:  # on/ignoring/group_*: both sides of the operation
            query.groupings.append((names, list(metric_at.values())))
    return query


def problems(expr: str, exported: dict[str, dict[str, Series]]) -> list[str]:
    series = {name: s for per_process in exported.values() for name, s in per_process.items()}
    query, out = parse(expr), []
    for metric, labels in query.selectors:
        if metric not in series:
            hint = f" (its counter is exposed as {metric}_total)" if f"{metric}_total" in series else ""
            out.append(f"{metric} is not exported{hint}")
        else:
            out += [f"{metric} has no label {label}" for label in labels if label not in series[metric].labels]
    for labels, metrics in query.groupings:
        out += [f"{metric} has no label {label} to group by" for metric in metrics if metric in series
                for label in labels if label not in series[metric].labels]
    for function, metrics in query.calls:
        for metric in (m for m in metrics if m in series):
            if function in COUNTER_FUNCTIONS and (series[metric].kind not in {"counter", "histogram"}
                                                  or metric.endswith("_created")):
                out.append(f"{function}() of {metric}, a {series[metric].kind}, not a counter")
            if function == "histogram_quantile" and not metric.endswith("_bucket"):
                out.append(f"histogram_quantile() of {metric}, not a histogram's buckets")
    out += [f"range {r}: use $__rate_interval (or $__range for a total)" for r in query.ranges if r not in RANGES]
    return out


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def _queries() -> dict[str, str]:
    """Every panel query's expression, by panel title and query id."""
    return {f"{panel['title']} {target['refId']}": target["expr"]
            for panel in _walk(_dashboard()["panels"]) for target in panel.get("targets", [])}


def _expressions() -> list[str]:
    return list(_queries().values())


def _variable_queries() -> list[tuple[str, str]]:
    """(selector expression, label) of every `label_values(...)` of the template variables."""
    out = []
    for variable in _dashboard()["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
        assert match, f"variable {variable['name']}: only label_values(metric, label) is checked: {query}"
        out.append((match[1], match[2]))
    return out


def test_the_dashboard_has_panels_for_every_process(exported: dict[str, dict[str, Series]]) -> None:
    asked = {metric for expr in _expressions() for metric, _labels in parse(expr).selectors}
    assert len(_expressions()) >= 30
    for process, series in exported.items():
        assert asked & set(series), f"no panel shows the {process}'s metrics"


@pytest.mark.parametrize("expr", _expressions(), ids=list(_queries()))
def test_every_query_names_exported_metrics_and_their_labels(expr: str, exported: dict[str, dict[str, Series]]
                                                             ) -> None:
    assert problems(expr, exported) == []


@pytest.mark.parametrize(("selector", "label"), _variable_queries())
def test_every_template_variable_reads_an_exported_label(selector: str, label: str,
                                                         exported: dict[str, dict[str, Series]]) -> None:
    assert problems(f"sum by ({label}) ({selector})", exported) == []


def test_every_query_uses_the_chosen_data_source_and_defined_variables() -> None:
    dashboard = _dashboard()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for node in _walk(dashboard["panels"]):
        if "datasource" in node:
            assert node["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, node.get("title")
    used = {name for expr in _expressions() for name in re.findall(r"\$(?!__)(\w+)", expr)}
    assert used and used <= set(variables)
    panels = [panel for panel in _walk(dashboard["panels"]) if "gridPos" in panel]
    assert len({panel["id"] for panel in panels}) == len(panels)
    assert len(_queries()) == sum(len(panel.get("targets", [])) for panel in panels)  # none hidden by a twin


@pytest.mark.parametrize(("expr", "problem"), [
    ("sum(rate(eventrouter_worker_events_in[$__rate_interval]))",
     "eventrouter_worker_events_in is not exported (its counter is exposed as eventrouter_worker_events_in_total)"),
    ('eventrouter_forwarder_lag{pipeline="web"}', "eventrouter_forwarder_lag has no label pipeline"),
    ("sum by (reason) (rate(eventrouter_forwarder_delivered_total[$__rate_interval]))",
     "eventrouter_forwarder_delivered_total has no label reason to group by"),
    ("sum(rate(eventrouter_gateway_events_accepted_total[$__rate_interval])) by (integration)",
     "eventrouter_gateway_events_accepted_total has no label integration to group by"),
    ("rate(eventrouter_forwarder_lag[$__rate_interval])",
     "rate() of eventrouter_forwarder_lag, a gauge, not a counter"),
    ("histogram_quantile(0.99, rate(eventrouter_worker_latency_seconds_sum[$__rate_interval]))",
     "histogram_quantile() of eventrouter_worker_latency_seconds_sum, not a histogram's buckets"),
    ("rate(eventrouter_gateway_failed_total[5m])", "range [5m]: use $__rate_interval (or $__range for a total)"),
])
def test_a_wrong_query_is_caught(expr: str, problem: str, exported: dict[str, dict[str, Series]]) -> None:
    assert problem in problems(expr, exported)
