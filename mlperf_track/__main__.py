"""``python -m mlperf_track`` runs the command line (used by the MLproject entry points)."""

from __future__ import annotations

import sys

from mlperf_track.cli import main

if __name__ == "__main__":
    sys.exit(main())
