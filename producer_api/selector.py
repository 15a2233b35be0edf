"""The selector kafka-python's I/O thread waits on: epoll that skips the system calls a wait undoes."""

from __future__ import annotations

import select
import selectors

_EPOLL_EVENTS = {
    selectors.EVENT_READ: select.EPOLLIN,
    selectors.EVENT_WRITE: select.EPOLLOUT,
    selectors.EVENT_READ | selectors.EVENT_WRITE: select.EPOLLIN | select.EPOLLOUT,
}


class DeferredUnregisterSelector(selectors.EpollSelector):
    """An EpollSelector that takes an unregistered socket out of the kernel's epoll set only before its next wait.

    kafka-python 3.0.12 unregisters a connection's socket once a response is readable and registers it again as
    soon as it has read it, in the same turn of its loop: two epoll_ctl calls a response that cancel out, each
    letting go of the GIL, so that the I/O thread queues for the GIL behind the request threads twice more a
    response before it can send the next request. Here an unregistered socket is only marked; registering it
    again before the next select() unmarks it with no system call, and select() removes what is still marked
    before it waits, so the kernel's set is the selector's map whenever epoll_wait runs.
    get_key() raises a bare KeyError for a socket it does not watch: the standard library's names the socket,
    which asks the kernel for both its addresses, and kafka-python asks before every registration.
    """

    def __init__(self):
        super().__init__()
        self._to_remove: dict[int, tuple[object, int]] = {}  # fd -> (file object, epoll events) still in the kernel

    def register(self, fileobj, events, data=None):
        """Watch fileobj for events; a socket unregistered since the last select() costs no system call."""
        key = selectors._BaseSelectorImpl.register(self, fileobj, events, data)
        epoll_events = _EPOLL_EVENTS[events]
        try:
            marked = self._to_remove.pop(key.fd, None)
            if marked is None:
                self._selector.register(key.fd, epoll_events)
            elif marked[0] is not fileobj:  # the old socket was closed and its number reused
                self._remove_from_kernel(key.fd)
                self._selector.register(key.fd, epoll_events)
            elif marked[1] != epoll_events:
                self._selector.modify(key.fd, epoll_events)
        except BaseException:
            selectors._BaseSelectorImpl.unregister(self, fileobj)
            raise
        return key

    def unregister(self, fileobj):
        """Stop watching fileobj; the kernel's set lets it go before the next select() waits."""
        key = selectors._BaseSelectorImpl.unregister(self, fileobj)
        self._to_remove[key.fd] = (fileobj, _EPOLL_EVENTS[key.events])  # fileobj held: its id is not reused
        return key

    def get_key(self, fileobj):
        """The key fileobj is watched with; KeyError(fileobj) when it is not watched."""
        key = self._fd_to_key.get(self._fileobj_lookup(fileobj))
        if key is None:
            raise KeyError(fileobj)
        return key

    def select(self, timeout=None):
        """Remove the sockets unregistered since the last call from the kernel's set, then wait as epoll does."""
        while self._to_remove:
            self._remove_from_kernel(self._to_remove.popitem()[0])
        return super().select(timeout)

    def close(self):
        """Close the epoll object and forget every socket."""
        self._to_remove.clear()
        super().close()

    def _remove_from_kernel(self, fd: int) -> None:
        try:
            self._selector.unregister(fd)
        except OSError:
            pass  # closed since: the kernel has already dropped it
