"""`bitbd-tui`: entry point; fails with a clear message when the `tui` extra is not installed."""

from __future__ import annotations

import sys


def main() -> int:
    """Run the console with the command line's arguments; returns 2, with a hint, when Textual is missing."""
    try:
        import textual  # noqa: F401
    except ImportError:
        print("bitbd-tui needs Textual: pip install 'bitbd[tui]'", file=sys.stderr)
        return 2
    from bitbd_tui.app import run

    return run(sys.argv[1:])
