"""``uv run python -m benchmarks [--smoke] [...]``: the benchmark runner (see runner.py and README.md)."""

import sys

from benchmarks.runner import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
