"""Keeping what a worker loads at start out of the cyclic garbage collector's full collections.

A worker holds tens of thousands of objects the collector tracks once it has loaded the app and opened its
producer (modules, Flask, marshmallow, kafka-python), and each lives as long as the worker. Python's full
collection walks every one of them with the GIL held, stalling the worker for tens of milliseconds, and under load
it runs often (the records a batch waits on outlive the young collections and set it off). Frozen after start-up,
they are skipped, and a full collection walks only what came after them (gc.freeze, the standard library's own
switch for this).
"""

from __future__ import annotations

import gc


def freeze_startup_objects() -> int:
    """Collect what is already garbage, then leave every object alive now out of later collections; how many."""
    # Without this collection, garbage cycles of the start-up would be frozen with the rest and never freed.
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
