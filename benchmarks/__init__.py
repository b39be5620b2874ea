"""Load tests of the bookstore API: ``python -m benchmarks`` (see benchmarks/README.md).

One module per job: ``runner`` (options and the run, step by step), ``services`` (the app's
settings and commands, and the floor server), ``catalogue`` (the search words and deep page
cursors the read scenarios draw from), ``covers`` (the cover images ``get_cover`` reads, made and
uploaded), ``wrk`` (wrk runs and their results), ``measure``
(one scenario on one target, and the sustained check), ``sql_check`` (the app's and the floor's
statements compared), ``processes`` (CPU time and memory from /proc) and ``report`` (the table,
the JSON and what they say about the machine). PostgreSQL, Redis and ``bookstore serve`` are
started with the launchers the tests use, from :mod:`bookstore.testing`.
"""

from pathlib import Path

__all__ = ["REPO", "RunError"]

REPO = Path(__file__).resolve().parent.parent


class RunError(RuntimeError):
    """A step of the run failed; the message says which and why."""
