"""`python -m bitbd` is `bitbd`."""

from __future__ import annotations

import sys

from bitbd.cli import main

sys.exit(main())
