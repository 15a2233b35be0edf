"""One wake-up byte for kafka-python's I/O thread however many threads ask before it next looks.

Replaces, on each producer the service builds, kafka.net.selector.NetworkSelector.wakeup and ._process_events
(kafka-python 3.0.12). kafka-python wakes its I/O thread (a byte on a socketpair) after every send() that finds
more than one batch queued for its partition, which under load is nearly every send(): a system call in the
sending thread and a turn of the I/O loop for each message. A wake-up asked for while an earlier byte is still
unread changes nothing the I/O thread would see, so it is skipped. The flag is cleared just after the I/O thread
read the byte; whatever a skipped wake-up was for was done before that, so the loop turn that follows the read
sees it.
"""

from __future__ import annotations


class CoalescedWakeup:
    """Installed on a producer's network selector: wakeup() writes a byte only when none is waiting to be read."""

    def __init__(self, selector):
        self._selector = selector
        self._unread = False
        self._process_events = selector._process_events
        selector.wakeup = self.wakeup
        selector._process_events = self.process_events

    def wakeup(self) -> None:
        """Write the wake-up byte unless one is already waiting to be read."""
        if self._unread:
            return
        self._unread = True
        try:
            self._selector._wakeup_w.send(b"\x00")
        except OSError:  # full (cannot happen with one byte at a time) or closed: ignored, as kafka-python does
            self._unread = False  # no byte went out, so the next wake-up must try again

    def process_events(self, events) -> None:
        """Let kafka-python handle the ready sockets; once it has read the wake-up byte, clear the flag."""
        wakeup_socket = self._selector._wakeup_r
        woken = any(key.fileobj is wakeup_socket for key, _ in events)
        self._process_events(events)
        if woken:
            # Only after the read: cleared before it, a byte written in between would be read with the flag
            # still set, and the wake-ups skipped after that read would wait for a byte nobody writes.
            self._unread = False


def apply(producer) -> None:
    """Coalesce the wake-ups of this producer's I/O thread."""
    CoalescedWakeup(producer._sender._client._net)
