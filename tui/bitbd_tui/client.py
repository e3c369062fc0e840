"""The only code in the TUI that talks to the daemon: the admin API over HTTP, and the live events WebSocket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp


class DaemonError(Exception):
    """The daemon could not be reached, or answered with an error."""


@dataclass(frozen=True)
class Readiness:
    """The daemon's `/readyz` answer: whether it is ready, and its checks."""

    ready: bool
    checks: dict[str, Any]


class DaemonClient:
    """The daemon's admin API, with the admin token; every failure (unreachable, timeout, an error
    answer) raises DaemonError."""

    def __init__(self, url: str, token: str, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        """The HTTP session with the admin token, made on first use (and again after close())."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers={"Authorization": f"Bearer {self._token}"})
        return self._session

    async def _call(self, method: str, path: str, ok: tuple[int, ...] = (200,)) -> Any:
        try:
            async with self.session().request(method, self.url + path, timeout=self._timeout) as resp:
                body = await resp.json(content_type=None)
                if resp.status not in ok:
                    message = body.get("error", {}).get("message", resp.reason) if isinstance(body, dict) else ""
                    raise DaemonError(message or f"HTTP {resp.status}")
                return body
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            raise DaemonError(f"cannot reach {self.url}: {type(e).__name__}: {e}") from None

    async def readiness(self) -> Readiness:
        """`GET /readyz`; a 503 (not ready) is an answer here, not an error."""
        body = await self._call("GET", "/readyz", ok=(200, 503))
        return Readiness(body.get("status") == "ready", body.get("checks", {}))

    async def tenants(self) -> list[dict[str, Any]]:
        """Every tenant, with its figures."""
        return list((await self._call("GET", "/v1/admin/tenants"))["tenants"])

    async def keys(self, tenant: str) -> list[dict[str, Any]]:
        """A tenant's API keys, with their usage."""
        return list((await self._call("GET", f"/v1/admin/tenants/{tenant}/keys"))["keys"])

    async def sources(self, tenant: str) -> list[dict[str, Any]]:
        """A tenant's sources, with refresh, last and next crawl, last job, documents and chunks."""
        return list((await self._call("GET", f"/v1/admin/tenants/{tenant}/sources"))["sources"])

    async def jobs(self, status: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        """Jobs of every tenant, newest first, at most `limit`, of one status if given."""
        query = f"?limit={limit}" + (f"&status={status}" if status else "")
        return list((await self._call("GET", "/v1/admin/jobs" + query))["jobs"])

    async def job(self, job_id: str) -> dict[str, Any]:
        """One job, with its progress and errors."""
        return dict(await self._call("GET", f"/v1/admin/jobs/{job_id}"))

    async def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a queued or running job; returns it as it is now."""
        return dict(await self._call("POST", f"/v1/admin/jobs/{job_id}/cancel"))

    async def retry(self, job_id: str) -> dict[str, Any]:
        """Run a job's source again as a new job; returns the new job."""
        return dict(await self._call("POST", f"/v1/admin/jobs/{job_id}/retry", ok=(202,)))

    async def questions(self, limit: int = 100) -> list[dict[str, Any]]:
        """The most recent questions of every tenant, at most `limit`."""
        return list((await self._call("GET", f"/v1/admin/questions?limit={limit}"))["questions"])

    async def conversation(self, conversation_id: str, tenant: str) -> list[dict[str, Any]]:
        """A tenant's conversation: its messages, oldest first, answers with citations and rating."""
        path = f"/v1/conversations/{conversation_id}?tenant={quote(tenant)}"
        return list((await self._call("GET", path))["messages"])

    async def gaps(self, tenant: str) -> list[dict[str, Any]]:
        """A tenant's unanswered topics of the last 30 days, the largest first."""
        return list((await self._call("GET", f"/v1/admin/gaps?tenant={quote(tenant)}"))["topics"])

    async def stats(self) -> dict[str, Any]:
        """The same snapshot the events feed sends every second."""
        return dict(await self._call("GET", "/v1/admin/stats"))

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """The live feed: `snapshot` and `jobs` messages until the connection drops (then DaemonError)."""
        try:
            async with self.session().ws_connect(
                self.url + "/v1/admin/events", heartbeat=10, timeout=aiohttp.ClientWSTimeout(ws_close=2)
            ) as ws:
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        break
                    yield msg.json()
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            raise DaemonError(f"cannot reach {self.url}: {type(e).__name__}: {e}") from None
        raise DaemonError(f"the live feed from {self.url} closed")

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
