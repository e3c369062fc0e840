"""Text neither PostgreSQL nor UTF-8 can hold: one definition for the HTTP boundary (which refuses it) and for
extraction (which drops it from what sites send)."""

from __future__ import annotations

import re

# NUL (PostgreSQL text cannot hold it) and lone UTF-16 surrogates (not Unicode text: UTF-8 cannot encode them, yet
# Python str holds them and Python's json module decodes a "\ud800" escape into one).
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
