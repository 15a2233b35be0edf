"""Start-up objects frozen out of full collections: garbage freed first, the rest skipped by later collections."""

import gc
import weakref

import pytest

from producer_api.server import heap


class Node:
    """An object the cyclic collector tracks, to build reference cycles with."""

    def __init__(self):
        self.other = None


@pytest.fixture
def unfreeze_after():
    """Give the test process its collector back as it was."""
    yield
    gc.unfreeze()


def test_objects_alive_at_start_up_are_left_out_of_later_collections(unfreeze_after):
    kept = Node()
    assert gc.is_tracked(kept)

    frozen = heap.freeze_startup_objects()

    assert frozen == gc.get_freeze_count() > 0
    assert not any(candidate is kept for candidate in gc.get_objects())
    later = Node()
    assert any(candidate is later for candidate in gc.get_objects())


def test_garbage_cycles_of_the_start_up_are_freed_not_frozen(unfreeze_after):
    gc.disable()  # no collection in between may free the cycle before the function under test does
    try:
        first, second = Node(), Node()
        first.other, second.other = second, first
        watch = weakref.ref(first)
        del first, second
        assert watch() is not None

        heap.freeze_startup_objects()
    finally:
        gc.enable()

    assert watch() is None
