"""`folder`: ingest files below an allowed server folder (an example of a third-party bitbd source plugin)."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

from bitbd.plugin_api import (
    ExtractError,
    Fetched,
    InvalidRequest,
    Previous,
    Settings,
    Source,
    SourceError,
    extract,
    hookimpl,
)

TYPES = {
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".txt": "text/plain",
    ".html": "text/html",
    ".htm": "text/html",
    ".pdf": "application/pdf",
}
MAX_FILES = 10_000


def _roots(settings: Settings) -> list[Path]:
    """The folders the operator allows, from `[plugins.folder] roots` in bitbd.toml."""
    return [Path(r).resolve() for r in settings.plugins.plugin_table("folder").get("roots", [])]


class FolderSource(Source):
    """The files below one folder that match a glob pattern; the folder must be below an allowed root."""

    type = "folder"

    @classmethod
    def validate(cls, config: dict[str, Any], settings: Settings) -> dict[str, Any]:
        unknown = set(config) - {"path", "pattern"}
        if unknown:
            raise InvalidRequest(f"unknown field(s) for a folder source: {', '.join(sorted(unknown))}")
        raw = config.get("path")
        if not isinstance(raw, str) or not raw:
            raise InvalidRequest('a folder source needs "path": the folder to ingest')
        path = Path(raw).resolve()
        roots = _roots(settings)
        if not any(path == root or root in path.parents for root in roots):
            raise InvalidRequest(
                f"{path} is not below an allowed folder; the operator lists those in "
                "[plugins.folder] roots in bitbd.toml"
            )
        if not path.is_dir():
            raise InvalidRequest(f"{path} is not a folder")
        return {"path": str(path), "pattern": str(config.get("pattern") or "**/*")}

    async def seeds(self) -> list[str]:
        return await asyncio.to_thread(self._list)  # disk work stays off the event loop

    def _list(self) -> list[str]:
        base = Path(self.config["path"])
        files = sorted(p for p in base.glob(self.config["pattern"]) if p.is_file() and p.suffix.lower() in TYPES)
        return [p.as_uri() for p in files[:MAX_FILES]]

    async def fetch(self, item: str, previous: Previous | None) -> Fetched:
        return await asyncio.to_thread(self._read, item)

    def _read(self, item: str) -> Fetched:
        path = Path(item.removeprefix("file://")).resolve()
        if not any(root in path.parents for root in _roots(self.ctx.settings)):
            raise SourceError(f"{path} is no longer below an allowed folder")
        try:
            data = path.read_bytes()
        except OSError as e:
            raise SourceError(f"cannot read {path}: {e.strerror}") from None
        ctype = TYPES[path.suffix.lower()]
        try:
            doc = extract(data, ctype, item, None, path.name)
        except ExtractError as e:
            raise SourceError(str(e)) from None
        return Fetched(
            url=item,
            title=doc.title,
            text=doc.text,
            content_type=ctype,
            content_hash=hashlib.sha256(doc.text.encode()).hexdigest(),
        )


@hookimpl
def register_sources() -> list[type[Source]]:
    return [FolderSource]
