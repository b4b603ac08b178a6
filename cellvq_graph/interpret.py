"""Kept only for ``cellvq/report.py``'s ``from cellvq_graph.interpret import keep_torch_threads``.

The read-outs live in :mod:`cellvq_graph.markers`, :mod:`cellvq_graph.states`, :mod:`cellvq_graph.networks`
and :mod:`cellvq_graph.tables`; import them from ``cellvq_graph``. Remove this module once report.py
imports ``cellvq_graph.keep_torch_threads``.
"""

from .readout import keep_torch_threads

__all__ = ["keep_torch_threads"]
