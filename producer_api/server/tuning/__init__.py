"""Changes to gunicorn's and gevent's internals, each in a module of its own that says what it replaces
(docs/tuning.md).

Each applies only where producer_api.tuning.enabled() says so: switched on, not skipped, and the library the
version it was verified on. Otherwise gunicorn and gevent work as shipped.
"""

from __future__ import annotations

from producer_api import tuning
from producer_api.config import STOP_KEEPALIVE_LINGER_S, Settings
from producer_api.server.tuning import (
    close_when_asked,
    headers_with_body,
    idle_close_on_stop,
    json_error_pages,
    no_continue_over_limit,
)
from producer_api.server.tuning.client_timeout import ClientTimeout


def install_in_worker(worker, settings: Settings) -> list[str]:
    """Apply, in a worker that has just started, every change that applies to it; the names of those applied."""
    applied = []

    def apply(name: str, change) -> None:
        if tuning.enabled(name, settings) and change() is not False:
            applied.append(name)

    apply("client_timeout", lambda: ClientTimeout.install(worker, settings.client_timeout_s))  # replaces handle()
    apply("idle_close_on_stop", lambda: idle_close_on_stop.apply(worker, STOP_KEEPALIVE_LINGER_S))
    apply("headers_with_body", headers_with_body.install)
    apply("json_error_pages", json_error_pages.apply)
    apply("close_when_asked", close_when_asked.apply)
    apply("no_continue_over_limit", lambda: no_continue_over_limit.apply(settings.max_body_bytes))
    return applied
