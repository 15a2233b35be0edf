"""The epoll selector of kafka-python's I/O thread: deferred unregistration, reused descriptors, quiet lookups."""

import select
import selectors
import socket

import pytest

if not hasattr(selectors, "EpollSelector"):
    pytest.skip("epoll is Linux's", allow_module_level=True)

from producer_api.selector import DeferredUnregisterSelector  # noqa: E402 - only where epoll exists


class CountingEpoll:
    """An epoll object that counts the epoll_ctl calls made through it."""

    def __init__(self, epoll):
        self.epoll = epoll
        self.calls = []

    def register(self, fd, events):
        self.calls.append("register")
        return self.epoll.register(fd, events)

    def modify(self, fd, events):
        self.calls.append("modify")
        return self.epoll.modify(fd, events)

    def unregister(self, fd):
        self.calls.append("unregister")
        return self.epoll.unregister(fd)

    def __getattr__(self, name):
        return getattr(self.epoll, name)


@pytest.fixture
def epoll():
    with DeferredUnregisterSelector() as selector:
        selector._selector = CountingEpoll(selector._selector)
        yield selector


@pytest.fixture
def pair():
    left, right = socket.socketpair()
    yield left, right
    left.close()
    right.close()


def test_a_socket_registered_again_before_the_next_wait_costs_no_system_call(epoll, pair):
    reader, writer = pair
    epoll.register(reader, selectors.EVENT_READ, "first")
    writer.send(b"x")
    assert [(key.data, events) for key, events in epoll.select(1)] == [("first", selectors.EVENT_READ)]
    epoll.unregister(reader)  # what kafka-python does once a response is readable ...
    reader.recv(1)
    epoll.register(reader, selectors.EVENT_READ, "second")  # ... and again once it has read it
    assert epoll._selector.calls == ["register"]
    writer.send(b"y")
    assert [(key.data, events) for key, events in epoll.select(1)] == [("second", selectors.EVENT_READ)]


def test_a_socket_unregistered_leaves_the_kernel_before_the_next_wait(epoll, pair):
    reader, writer = pair
    epoll.register(reader, selectors.EVENT_READ)
    epoll.unregister(reader)
    writer.send(b"x")  # readable, but nobody waits for it: the wait must not end on it
    assert epoll.select(0.05) == []
    assert epoll._selector.calls == ["register", "unregister"]
    epoll._selector.epoll.register(reader.fileno(), select.EPOLLIN)  # FileExistsError if the kernel still had it


def test_registering_again_for_other_events_modifies_the_kernel_entry(epoll, pair):
    reader, _ = pair
    epoll.register(reader, selectors.EVENT_READ)
    epoll.unregister(reader)
    epoll.register(reader, selectors.EVENT_WRITE, "writer")
    assert epoll._selector.calls == ["register", "modify"]
    assert [(key.data, events) for key, events in epoll.select(1)] == [("writer", selectors.EVENT_WRITE)]


def test_a_closed_socket_whose_number_is_reused_is_watched_again(epoll):
    old_reader, old_writer = socket.socketpair()
    epoll.register(old_reader, selectors.EVENT_READ, "old")
    epoll.unregister(old_reader)
    number = old_reader.fileno()
    old_reader.close()
    old_writer.close()
    new_reader, new_writer = socket.socketpair()
    try:
        assert number in (new_reader.fileno(), new_writer.fileno())  # the kernel hands out the lowest free number
        reused = new_reader if new_reader.fileno() == number else new_writer
        other = new_writer if reused is new_reader else new_reader
        epoll.register(reused, selectors.EVENT_READ, "new")
        other.send(b"x")
        assert [(key.data, events) for key, events in epoll.select(1)] == [("new", selectors.EVENT_READ)]
    finally:
        new_reader.close()
        new_writer.close()


def test_a_socket_closed_after_it_was_unregistered_does_not_break_the_wait(epoll, pair):
    reader, writer = pair
    doomed, doomed_peer = socket.socketpair()
    epoll.register(doomed, selectors.EVENT_READ)
    epoll.register(reader, selectors.EVENT_READ, "reader")
    epoll.unregister(doomed)
    doomed.close()
    doomed_peer.close()
    writer.send(b"x")
    assert [(key.data, events) for key, events in epoll.select(1)] == [("reader", selectors.EVENT_READ)]
    assert epoll.get_map().keys() == {reader.fileno()}


def test_modify_changes_what_is_waited_for(epoll, pair):
    reader, writer = pair
    epoll.register(reader, selectors.EVENT_READ, "read")
    epoll.modify(reader, selectors.EVENT_READ | selectors.EVENT_WRITE, "both")
    writer.send(b"x")
    assert [(key.data, events) for key, events in epoll.select(1)] == [
        ("both", selectors.EVENT_READ | selectors.EVENT_WRITE)
    ]


class Named:
    """A file object whose name must not be asked for."""

    def __init__(self, fd: int):
        self.fd = fd

    def fileno(self) -> int:
        return self.fd

    def __repr__(self) -> str:
        raise AssertionError("the selector asked for the name of a socket it does not watch")


def test_lookups_of_unwatched_sockets_do_not_name_them(epoll, pair):
    watched, unwatched = Named(pair[0].fileno()), Named(pair[1].fileno())
    epoll.register(watched, selectors.EVENT_READ, "data")
    assert epoll.get_key(watched).data == "data"
    with pytest.raises(KeyError):
        epoll.get_key(unwatched)
    epoll.unregister(watched)
    with pytest.raises(KeyError):
        epoll.get_key(watched)
