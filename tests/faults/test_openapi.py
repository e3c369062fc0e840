"""Schemathesis against a real `bitbd serve`, driven by the project's own OpenAPI document (GET /openapi.yaml):
for every operation, valid and invalid requests generated from the document. No 500, every response as the
document says (status, content type, body schema), invalid input refused, auth required where declared."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import yaml
from aiohttp import web
from schemathesis.config import SchemathesisConfig

from bitbd.http.routes import OPENAPI, setup_routes
from tests.conftest import property_seed
from tests.support.daemon import Daemon, bitbd, clean_env, finished, poll_job

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
EXAMPLES = 50  # per operation; a run at 150 also passed but took 3x as long (CI has 20 minutes in all)


def test_the_document_lists_exactly_the_routes_the_server_has() -> None:
    app = web.Application()
    setup_routes(app)
    served: set[tuple[str, str]] = set()
    for resource in app.router.resources():
        sub = getattr(resource, "_app", None)  # a sub-app (/v1/admin): its routes carry the full path
        for route in sub.router.routes() if sub is not None else resource:
            if route.method != "HEAD":
                served.add((route.method, route.resource.canonical))  # type: ignore[union-attr]
    document = yaml.safe_load(OPENAPI.read_text())
    documented = {(m.upper(), p) for p, item in document["paths"].items() for m in item}
    assert served == documented, (
        f"served, not documented: {served - documented}; documented, not served: {documented - served}"
    )


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, str]]:
    root = tmp_path_factory.mktemp("openapi")
    # No failed-authentication throttle: schemathesis sends wrong credentials on purpose, and after 20 of them
    # every request would be a 429 (tests/bitbd/http/test_limits.py tests the throttle).
    env = clean_env(BITBD_CHAT__RATE_LIMIT_PER_MINUTE="0", BITBD_SERVER__BODY_TIMEOUT="5", BITBD_AUTH__MAX_FAILURES="0")
    d = Daemon(root / "data", root, env=env).start()
    bitbd("tenant", "create", "fuzzed", "--data-dir", str(d.data_dir), cwd=root, env=env)
    key = bitbd("key", "create", "--tenant", "fuzzed", "--data-dir", str(d.data_dir), cwd=root, env=env).stdout.strip()
    job = d.upload(key, "returns.md", b"# Returns\n\nItems can be returned within 30 days for a full refund.\n")
    poll_job(d, key, job, finished)
    yield d, key
    d.stop()
    assert "Traceback" not in d.output(), d.output()[-3000:]


@pytest.fixture(scope="module")
def api(daemon: tuple[Daemon, str], pytestconfig: pytest.Config) -> Any:
    d, key = daemon
    seed = property_seed(pytestconfig)
    config = SchemathesisConfig.from_dict(
        {
            **({"seed": seed} if seed is not None else {}),
            "base-url": d.url,
            "generation": {"max-examples": EXAMPLES},
            "auth": {"openapi": {"secretKey": {"bearer": key}, "adminToken": {"bearer": d.token()}}},
            "operations": [
                # What a schema cannot say, each refused with a specific 4xx: a plain GET to a WebSocket endpoint
                # (400 "speaks WebSocket only"), a file whose name has no ingested extension (415), a key expiring
                # in the past (400).
                {"include-path": ["/v1/chat", "/v1/admin/events"], **_also_accept("400")},
                {"include-path": "/v1/uploads", **_also_accept("415")},
                {"include-path": "/v1/admin/tenants/{tenant}/keys", "include-method": "POST", **_also_accept("400")},
            ],
        }
    )
    # The document as the server serves it: what a client would fetch.
    return schemathesis.openapi.from_url(d.url + "/openapi.yaml", config=config)


def _also_accept(status: str) -> dict[str, Any]:
    statuses = ["2xx", "3xx", "401", "403", "404", "409", "429", status]
    return {"checks": {"positive_data_acceptance": {"expected-statuses": statuses}}}


schema = schemathesis.pytest.from_fixture("api")


@schema.parametrize()
def test_every_operation_answers_as_documented(case: Any, daemon: tuple[Daemon, str]) -> None:
    d, _ = daemon
    response = case.call_and_validate()
    if response.status_code >= 400 and response.headers.get("Content-Type", "").startswith("application/json"):
        error = response.json()["error"]
        assert error["code"] != "internal" and len(error["message"]) > 10, response.text
    assert d.proc is not None and d.proc.poll() is None, "the server is still running"


def test_the_document_is_served(daemon: tuple[Daemon, str]) -> None:
    d, _ = daemon
    with urllib.request.urlopen(d.url + "/openapi.yaml", timeout=10) as r:
        assert r.headers["Content-Type"].startswith("application/yaml")
        served = yaml.safe_load(r.read())
    assert served == yaml.safe_load(Path(OPENAPI).read_text())
    assert served["openapi"].startswith("3.1")
