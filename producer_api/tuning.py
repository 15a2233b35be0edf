"""The register of the service's changes to third-party libraries' internals, and the guard that applies them.

Each change is one module under producer_api/kafka/tuning/ or producer_api/server/tuning/, and docs/tuning.md
lists each with what it replaces, the version it was verified on, what it buys and the test that guards it. A
change applies only while PRODUCER_TUNING is on, PRODUCER_TUNING_SKIP does not name it, and the installed library
is the version it was verified on; otherwise the library's own behaviour stays.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cache
from importlib.metadata import PackageNotFoundError, version

SPEED = "speed"  # buys throughput or latency on a headline figure
FIX = "fix"  # keeps a promise of the service's contract that the library as shipped breaks


@dataclass(frozen=True)
class Tuning:
    """One change to a library's internals: its name, the library and version it was verified on, and its kind."""

    name: str
    library: str  # the distribution's name, as importlib.metadata knows it
    verified: str
    kind: str
    module: str

    def installed(self) -> str | None:
        """The installed version of the library, or None if it is not installed."""
        return _installed_version(self.library)

    def matches_installed(self) -> bool:
        """Whether the installed library is the version this change was verified on."""
        return self.installed() == self.verified


def _kafka(name: str, kind: str = SPEED) -> Tuning:
    return Tuning(name, "kafka-python", "3.0.12", kind, f"producer_api.kafka.tuning.{name}")


def _gunicorn(name: str, kind: str) -> Tuning:
    return Tuning(name, "gunicorn", "27.0.1", kind, f"producer_api.server.tuning.{name}")


REGISTER: tuple[Tuning, ...] = (
    _kafka("batch_append"),
    _kafka("send_before_wait"),
    _gunicorn("headers_with_body", SPEED),
    _gunicorn("json_error_pages", FIX),
    _gunicorn("close_when_asked", FIX),
    _gunicorn("no_continue_over_limit", FIX),
    _gunicorn("client_timeout", FIX),
    Tuning("idle_close_on_stop", "gevent", "26.9.0", FIX, "producer_api.server.tuning.idle_close_on_stop"),
)
NAMES = frozenset(tuning.name for tuning in REGISTER)
_BY_NAME = {tuning.name: tuning for tuning in REGISTER}


@cache
def _installed_version(library: str) -> str | None:
    try:
        return version(library)
    except PackageNotFoundError:
        return None


def enabled(name: str, settings) -> bool:
    """Whether the change called name applies in this process: switched on, not skipped, and verified here."""
    tuning = _BY_NAME[name]
    return settings.tuning and name not in settings.tuning_skip and tuning.matches_installed()


def warn_about_versions(log: logging.Logger, settings) -> list[Tuning]:
    """Log one WARNING line for each switched-on change whose library is not the verified version; return them."""
    if not settings.tuning:
        return []
    mismatched = [tuning for tuning in REGISTER
                  if tuning.name not in settings.tuning_skip and not tuning.matches_installed()]
    for tuning in mismatched:
        log.warning("tuning %s not applied: verified on %s %s, installed %s; the library's own behaviour stays "
                    "(docs/tuning.md)", tuning.name, tuning.library, tuning.verified, tuning.installed() or "none")
    return mismatched
