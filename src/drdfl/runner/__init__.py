"""The experiment as a graph: a plan of nodes with explicit needs (reference model →
units → assembly → report), executed locally (:mod:`~drdfl.runner.local`) or on Ray
(:mod:`~drdfl.runner.distributed`). ``drdfl run`` (:mod:`~drdfl.runner.driver`) and
``drdfl sweep`` (:mod:`~drdfl.runner.sweep`) are two front ends of the same plan.

Submodules load on first use; ``from drdfl.runner import run`` is the one-call entry.
"""

from __future__ import annotations

from typing import Any


def run(*args: Any, **kwargs: Any) -> Any:
    """Run the whole experiment for a config into an output directory; see
    :func:`drdfl.runner.driver.run`."""
    from drdfl.runner.driver import run as _run

    return _run(*args, **kwargs)


__all__ = ["run"]
