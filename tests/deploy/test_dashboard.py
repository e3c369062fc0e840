"""The Grafana dashboard can be read (every series has a legend of its own, rates follow the scrape interval) and
the alert rules cover a target that is down."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from tests.conftest import repo_root

DEPLOY = repo_root() / "deploy"
_RANGE = re.compile(r"\[([^\]]+)\]")


def panels() -> list[dict[str, Any]]:
    dashboard = json.loads((DEPLOY / "grafana" / "bitbd-dashboard.json").read_text())
    result: list[dict[str, Any]] = dashboard["panels"]
    return result


def test_every_series_has_a_legend_that_tells_it_from_its_neighbours() -> None:
    for panel in panels():
        legends = [t.get("legendFormat") for t in panel["targets"]]
        assert all(legends), f"{panel['title']}: a target without legendFormat"
        assert len(set(legends)) == len(legends), f"{panel['title']}: two targets share a legend {legends}"
        for target in panel["targets"]:
            # A query grouped by labels needs them in its legend, or its series all look alike.
            by = re.search(r"\bby \(([^)]*)\)", target["expr"])
            for label in by[1].split(",") if by else []:
                label = label.strip()
                if label != "le":
                    assert "{{" + label + "}}" in target["legendFormat"], (panel["title"], label)


def test_rates_use_the_rate_interval_not_fixed_windows() -> None:
    for panel in panels():
        for target in panel["targets"]:
            windows = _RANGE.findall(target["expr"])
            assert all(w == "$__rate_interval" for w in windows), (panel["title"], windows)


def test_an_alert_fires_for_a_target_that_is_down() -> None:
    rules = [
        r for g in yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"] for r in g["rules"]
    ]
    down = [r for r in rules if re.search(r"\bup\b.*== 0", r["expr"])]
    assert down, "no rule on up == 0"
    jobs = {
        c["job_name"] for c in yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())["scrape_configs"]
    }
    assert all(job in down[0]["expr"] for job in jobs), (down[0]["expr"], jobs)
