"""The only code in the TUI that talks to the daemon (HTTP, admin token)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp


class DaemonError(Exception):
    """The daemon could not be reached, or answered with an error."""


@dataclass(frozen=True)
class Readiness:
    ready: bool
    checks: dict[str, Any]


class DaemonClient:
    def __init__(self, url: str, token: str, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def _get(self, path: str, ok: tuple[int, ...] = (200,)) -> Any:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, headers={"Authorization": f"Bearer {self._token}"})
        try:
            async with self._session.get(self.url + path) as resp:
                body = await resp.json(content_type=None)
                if resp.status not in ok:
                    message = body.get("error", {}).get("message", resp.reason) if isinstance(body, dict) else ""
                    raise DaemonError(f"{path}: HTTP {resp.status}: {message}")
                return body
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            raise DaemonError(f"cannot reach {self.url}: {type(e).__name__}: {e}") from None

    async def readiness(self) -> Readiness:
        body = await self._get("/readyz", ok=(200, 503))
        return Readiness(body.get("status") == "ready", body.get("checks", {}))

    async def tenants(self) -> list[dict[str, Any]]:
        body = await self._get("/v1/admin/tenants")
        return list(body["tenants"])

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
