"""Plain progress lines for long phases, for logs and notebooks (no terminal needed).

``PhaseLog(steps)`` is an ``on_step`` callback of :func:`cellvq.pipeline.run`: each call prints the phase
that starts, with the time the previous one took, e.g.::

    cellvq: embed (1/8) ...
    cellvq: doublets (2/8) ... [embed 3.1 s]
    cellvq: done in 41.2 s [store 0.8 s]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import TextIO

__all__ = ["PIPELINE_STEPS", "PhaseLog"]

PIPELINE_STEPS = ("embed", "doublets", "graph", "markers", "subtypes", "gene_network", "tables", "store")


class PhaseLog:
    """Print one line per phase (and flush it) to ``stream`` (default: stderr)."""

    def __init__(self, steps: Sequence[str] = PIPELINE_STEPS, stream: TextIO | None = None, prefix: str = "cellvq"):
        self.steps = list(steps)
        self.stream = stream
        self.prefix = prefix
        self._t0 = self._t = time.perf_counter()
        self._current: str | None = None

    def _last(self) -> str:
        if self._current is None:
            return ""
        return f" [{self._current} {time.perf_counter() - self._t:.1f} s]"

    def _print(self, text: str) -> None:
        stream = self.stream or sys.stderr
        print(f"{self.prefix}: {text}", file=stream, flush=True)

    def __call__(self, name: str) -> None:
        pos = f" ({self.steps.index(name) + 1}/{len(self.steps)})" if name in self.steps else ""
        self._print(f"{name}{pos} ...{self._last()}")
        self._current, self._t = name, time.perf_counter()

    def done(self, what: str = "done") -> None:
        self._print(f"{what} in {time.perf_counter() - self._t0:.1f} s{self._last()}")
        self._current = None
