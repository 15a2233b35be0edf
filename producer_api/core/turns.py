"""Turns for the worker's other connections during long loops over a batch.

A gevent worker switches greenlets only where one waits, so a batch of 1000 messages validated, encoded and
appended without a wait would hold every other connection of its worker for its whole 15-20 ms. Long loops call
give_turn() every YIELD_EVERY items. It does nothing until the server runtime installs gevent's switch
(producer_api/server/green.py); threads take turns anyway.
"""

from __future__ import annotations

from collections.abc import Callable

# Items of a batch a request handles between two turns for the worker's other connections: about 1 ms of work.
YIELD_EVERY = 64

_switch: Callable[[], None] | None = None


def install(switch: Callable[[], None]) -> None:
    """Make give_turn() call switch (gevent's sleep(0)) in this process."""
    global _switch
    _switch = switch


def give_turn() -> None:
    """Let the worker's other ready connections run now, where the server runtime says how; else nothing."""
    if _switch is not None:
        _switch()
