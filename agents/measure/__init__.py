"""The measurement protocol: phases, statistics, memory, environment, isolation.

``run_isolated(spec, workdir=...)`` measures one ``MeasureSpec`` in a fresh subprocess;
``summarize(times_ms)`` turns latencies into ``LatencyStats``.
"""

from .isolation import run_isolated
from .stats import summarize

__all__ = ["run_isolated", "summarize"]
