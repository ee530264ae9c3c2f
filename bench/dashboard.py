"""Benchmark entry kept for habit: the dashboard is timed by bench/console.py, beside the search.

.venv/bin/python bench/dashboard.py [bench/console.py's options]   # the same as bench/console.py
"""

from __future__ import annotations

import runpy
from pathlib import Path

if __name__ == "__main__":
    runpy.run_path(str(Path(__file__).resolve().parent / "console.py"), run_name="__main__")
