"""The core must import without Textual (which is only the `tui` extra)."""

from __future__ import annotations

import subprocess
import sys

BLOCK_TEXTUAL = """
import importlib.abc, pkgutil, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "textual" or name.startswith("textual."):
            raise ImportError("textual is blocked for this test")
        return None

sys.meta_path.insert(0, Block())
import bitbd, bitbd_plugins
for pkg in (bitbd, bitbd_plugins):
    for mod in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        if mod.name != "bitbd.__main__":
            __import__(mod.name)
assert "textual" not in sys.modules
print("ok")
"""


def test_core_imports_without_textual() -> None:
    result = subprocess.run([sys.executable, "-c", BLOCK_TEXTUAL], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_tui_entry_point_says_what_to_install_without_textual() -> None:
    code = BLOCK_TEXTUAL.split("import bitbd,")[0] + "from bitbd_tui.main import main\nraise SystemExit(main())\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "pip install 'bitbd[tui]'" in result.stderr
