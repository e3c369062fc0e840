"""The `upload` source: files sent to POST /v1/uploads (HTML, Markdown, plain text, PDF)."""

from __future__ import annotations

import hashlib

from bitbd.plugin_api import (
    ExtractError,
    Fetched,
    Previous,
    Source,
    SourceError,
    extract_off_loop,
    hookimpl,
    read_upload,
    upload_ids,
)


class UploadSource(Source):
    """The files of one upload: its items are ``upload:<id>``, each extracted by its content type."""

    type = "upload"
    uploads = True

    @property
    def max_pages(self) -> int:
        """Every file sent: an upload is bounded by the upload limits (`ingest.max_request_bytes`), not by
        `crawler.max_pages`."""
        return 1_000_000

    async def seeds(self) -> list[str]:
        """`upload:<id>` for every file stored for this source."""
        return [f"upload:{i}" for i in await upload_ids(self.ctx.need_pool(), self.ctx.tenant_id, self.ctx.source_id)]

    async def fetch(self, item: str, previous: Previous | None) -> Fetched:
        """Extract one stored file (in a child process, with a time limit) as `upload:<filename>`;
        raises SourceError if the file is gone or has no usable text."""
        upload = await read_upload(
            self.ctx.need_pool(), self.ctx.tenant_id, self.ctx.source_id, item.removeprefix("upload:")
        )
        if upload is None:
            raise SourceError("the uploaded file is gone (its source was deleted)")
        name, ctype = upload.filename, upload.content_type
        try:
            # In a child process with a time limit, as for web pages: parsers hold the GIL (bitbd/ingest/offload.py).
            doc = await extract_off_loop(upload.data, ctype, f"upload:{name}", None, name)
        except ExtractError as e:
            raise SourceError(f"{name}: {e}") from None
        return Fetched(
            url=f"upload:{name}",
            title=doc.title,
            text=doc.text,
            content_type=ctype,
            content_hash=hashlib.sha256(doc.text.encode()).hexdigest(),
        )


@hookimpl
def register_sources() -> list[type[Source]]:
    """Hook: the `upload` source."""
    return [UploadSource]
