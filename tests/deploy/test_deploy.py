"""The Grafana dashboard and the Prometheus alert rules only name metrics that /metrics really exposes."""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp.test_utils import TestClient

from tests.conftest import repo_root

DEPLOY = repo_root() / "deploy"
_METRIC = re.compile(r"\bbitbd_[a-z_]+\b")
_SUFFIXES = ("_bucket", "_sum", "_count")


def referenced() -> dict[str, set[str]]:
    dashboard = json.loads((DEPLOY / "grafana" / "bitbd-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    return {
        "grafana": {m for e in exprs for m in _METRIC.findall(e)},
        "alerts": set(_METRIC.findall((DEPLOY / "prometheus" / "alerts.yml").read_text())),
    }


async def test_every_metric_the_deploy_files_use_exists(client: TestClient[Any, Any]) -> None:
    text = await (await client.get("/metrics")).text()
    exposed = set(re.findall(r"^# TYPE (bitbd_[a-z_]+) (\w+)$", text, re.MULTILINE))
    names = {name for name, _ in exposed}
    histograms = {name for name, kind in exposed if kind == "histogram"}
    for where, metrics in referenced().items():
        assert metrics, f"{where} names no bitbd metric"
        for metric in metrics:
            base = next((metric.removesuffix(s) for s in _SUFFIXES if metric.endswith(s)), metric)
            if base != metric:
                assert base in histograms, f"{where} uses {metric}, but {base} is not a histogram in /metrics"
            else:
                assert metric in names, f"{where} uses {metric}, which /metrics does not expose"
    alerts = (DEPLOY / "prometheus" / "alerts.yml").read_text()
    for needed in ("bitbd_queue_depth", "bitbd_ingestion_jobs_total", "bitbd_rag_query_latency_seconds_bucket"):
        assert needed in alerts, f"an alert on {needed} (backlog, failure rate, p95 latency) is expected"
