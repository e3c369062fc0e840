"""The admin API over real HTTP: shapes outside tools depend on, and every way a request can be wrong."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from bitbd.settings import Settings
from tests.conftest import admin_headers

Client = TestClient[web.Request, web.Application]


async def post(client: Client, path: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    resp = await client.post(path, json=body, headers=headers if headers is not None else admin_headers())
    return resp.status, await resp.json()


async def make_tenant(client: Client, name: str = "acme") -> dict[str, Any]:
    status, body = await post(client, "/v1/admin/tenants", {"name": name})
    assert status == 201, body
    return dict(body)


async def test_create_tenant_and_keys_shapes(client: Client) -> None:
    tenant = await make_tenant(client)
    assert tenant["name"] == "acme" and len(tenant["id"]) == 36

    status, secret = await post(client, f"/v1/admin/tenants/{tenant['id']}/keys", {"kind": "secret"})
    assert status == 201
    assert secret["key"].startswith("sk_") and secret["kind"] == "secret" and secret["tenant_id"] == tenant["id"]

    expires = (datetime.now(UTC) + timedelta(days=14)).isoformat()
    status, public = await post(
        client,
        f"/v1/admin/tenants/{tenant['id']}/keys",
        {
            "kind": "public",
            "origins": ["https://Acme.example:443/"],
            "expires_at": expires,
            "quota": 200,
            "trial": True,
        },
    )
    assert status == 201, public
    assert public["key"].startswith("pk_")
    assert public["origins"] == ["https://acme.example"]
    assert public["quota"] == 200 and public["trial"] is True and public["status"] == "active"

    resp = await client.get(f"/v1/admin/tenants/{tenant['id']}/keys", headers=admin_headers())
    keys = (await resp.json())["keys"]
    assert [k["id"] for k in keys] == [secret["id"], public["id"]]
    assert all("key" not in k for k in keys), "a listing must never show a key's secret"


async def test_tenant_list_get_delete(client: Client) -> None:
    tenant = await make_tenant(client, "one")
    await make_tenant(client, "two")
    resp = await client.get("/v1/admin/tenants", headers=admin_headers())
    assert [t["name"] for t in (await resp.json())["tenants"]] == ["one", "two"]
    resp = await client.get("/v1/admin/tenants/one", headers=admin_headers())
    assert (await resp.json())["id"] == tenant["id"]
    resp = await client.delete(f"/v1/admin/tenants/{tenant['id']}", headers=admin_headers())
    assert resp.status == 204
    resp = await client.get(f"/v1/admin/tenants/{tenant['id']}", headers=admin_headers())
    assert resp.status == 404


async def test_secret_key_authenticates_then_revoked_key_is_refused(client: Client) -> None:
    tenant = await make_tenant(client)
    _, key = await post(client, f"/v1/admin/tenants/{tenant['id']}/keys", {"kind": "secret"})
    auth = {"Authorization": f"Bearer {key['key']}"}
    resp = await client.get("/v1/tenant", headers=auth)
    assert resp.status == 200
    assert (await resp.json())["tenant"]["name"] == "acme"

    resp = await client.delete(f"/v1/admin/tenants/{tenant['id']}/keys/{key['id']}", headers=admin_headers())
    assert (await resp.json())["status"] == "revoked"
    resp = await client.get("/v1/tenant", headers=auth)
    assert resp.status == 401
    assert "revoked" in (await resp.json())["error"]["message"]


async def test_bad_keys_each_get_their_reason(client: Client) -> None:
    tenant = await make_tenant(client)
    _, public = await post(
        client, f"/v1/admin/tenants/{tenant['id']}/keys", {"kind": "public", "origins": ["https://a.example"]}
    )
    cases = {
        "": "missing Authorization",
        "Basic abc": "Bearer",
        "Bearer nonsense": "malformed API key",
        "Bearer sk_" + "x" * 43: "unknown API key",
        f"Bearer {public['key']}": "needs a secret key",
    }
    for header, expected in cases.items():
        resp = await client.get("/v1/tenant", headers={"Authorization": header} if header else {})
        body = await resp.json()
        assert resp.status == 401, header
        assert body["error"]["code"] == "unauthorized"
        assert expected in body["error"]["message"], (header, body)


async def test_admin_token_required(client: Client) -> None:
    resp = await client.get("/v1/admin/tenants")
    assert resp.status == 401
    assert "Authorization" in (await resp.json())["error"]["message"]
    resp = await client.get("/v1/admin/tenants", headers={"Authorization": "Bearer wrong"})
    assert resp.status == 401
    assert (await resp.json())["error"]["message"].startswith("wrong admin token")


async def test_malformed_json(client: Client) -> None:
    resp = await client.post(
        "/v1/admin/tenants", data=b'{"name": ', headers={**admin_headers(), "Content-Type": "application/json"}
    )
    body = await resp.json()
    assert resp.status == 400
    assert body["error"]["code"] == "invalid_json"
    assert "line 1 column" in body["error"]["message"]


async def test_wrong_content_type(client: Client) -> None:
    resp = await client.post(
        "/v1/admin/tenants",
        data=b"name=acme",
        headers={**admin_headers(), "Content-Type": "application/x-www-form-urlencoded"},
    )
    body = await resp.json()
    assert resp.status == 415
    assert "application/json" in body["error"]["message"]


async def test_oversized_body(client: Client, settings: Settings) -> None:
    limit = settings.server.max_body_bytes
    resp = await client.post(
        "/v1/admin/tenants",
        data=b'{"name": "' + b"a" * limit + b'"}',
        headers={**admin_headers(), "Content-Type": "application/json"},
    )
    body = await resp.json()
    assert resp.status == 413
    assert body["error"]["code"] == "payload_too_large"
    assert str(limit) in body["error"]["message"]


async def test_not_an_object_unknown_field_and_bad_values(client: Client) -> None:
    status, body = await post(client, "/v1/admin/tenants", ["acme"])
    assert status == 400 and "JSON object" in body["error"]["message"]
    status, body = await post(client, "/v1/admin/tenants", {"name": "acme", "colour": "red"})
    assert status == 400 and "colour" in body["error"]["message"]
    status, body = await post(client, "/v1/admin/tenants", {"name": "Acme Corp!"})
    assert status == 400 and "not valid" in body["error"]["message"]
    tenant = await make_tenant(client)
    keys = f"/v1/admin/tenants/{tenant['id']}/keys"
    for bad, expected in [
        ({"kind": "root"}, "kind"),
        ({"kind": "public"}, "at least one allowed origin"),
        ({"kind": "public", "origins": ["https://a.example/path"]}, "not of the form"),
        ({"kind": "secret", "origins": ["https://a.example"]}, "public keys only"),
        ({"kind": "secret", "quota": 0}, "positive"),
        ({"kind": "secret", "expires_at": "2001-01-01T00:00:00Z"}, "in the past"),
        ({"kind": "secret", "expires_at": "2099-01-01T00:00:00"}, "expires_at"),
        ({"kind": "public", "origins": ["https://a.example"], "trial": True}, "expiry or a quota"),
    ]:
        status, body = await post(client, keys, bad)
        assert status == 400, bad
        assert expected in body["error"]["message"], (bad, body)


async def test_duplicate_tenant_is_a_conflict(client: Client) -> None:
    await make_tenant(client)
    status, body = await post(client, "/v1/admin/tenants", {"name": "acme"})
    assert status == 409
    assert "already exists" in body["error"]["message"]


async def test_unknown_tenant(client: Client) -> None:
    for ref in ("00000000-0000-0000-0000-000000000000", "nobody"):
        status, body = await post(client, f"/v1/admin/tenants/{ref}/keys", {"kind": "secret"})
        assert status == 404
        assert body["error"]["code"] == "not_found"
        assert "tenant list" in body["error"]["message"]


async def test_unknown_route_and_method_are_json(client: Client) -> None:
    resp = await client.get("/v2/nothing")
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "not_found"
    resp = await client.put("/healthz")
    assert resp.status == 405 and (await resp.json())["error"]["code"] == "method_not_allowed"


async def test_plugins_endpoint_lists_builtins(client: Client) -> None:
    resp = await client.get("/v1/admin/plugins", headers=admin_headers())
    body = await resp.json()
    hooks = {p["name"]: p["hooks"] for p in body["plugins"]}
    assert hooks == {
        "fastembed": ["register_embedders"],
        "pgvector": ["register_stores"],
        "upload": ["register_sources"],
        "web": ["register_sources"],
        "extractive": ["register_generators"],
        "openai": ["register_generators"],
        "sentence-transformers": ["register_embedders"],
    }
