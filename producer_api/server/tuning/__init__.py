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
from producer_api.server.tuning.connection_balance import ConnectionBalance


def make_connection_balance(settings: Settings) -> ConnectionBalance | None:
    """The balance of connections over workers, made in the master before it forks; None where it does not apply."""
    return ConnectionBalance(settings.workers) if tuning.enabled("connection_balance", settings) else None


def install_in_worker(worker, settings: Settings, balance: ConnectionBalance | None) -> list[str]:
    """Apply, in a worker that has just started, every change that applies to it; the names of those applied."""
    applied = []

    def apply(name: str, change) -> None:
        if tuning.enabled(name, settings) and change() is not False:
            applied.append(name)

    apply("client_timeout", lambda: ClientTimeout.install(worker, settings.client_timeout_s))  # replaces handle()
    if balance is not None:
        apply("connection_balance", lambda: balance.join(worker) or balance.join_green(worker))
    apply("idle_close_on_stop", lambda: idle_close_on_stop.apply(worker, STOP_KEEPALIVE_LINGER_S))
    apply("headers_with_body", headers_with_body.install)
    apply("json_error_pages", json_error_pages.apply)
    apply("close_when_asked", close_when_asked.apply)
    apply("no_continue_over_limit", lambda: no_continue_over_limit.apply(settings.max_body_bytes))
    return applied
