"""Optional API keys: who is calling, checked before any view runs, and what the caller may write."""

from __future__ import annotations

import hmac

from flask import Flask, current_app, g, request

from producer_api.config import ApiKey, Settings
from producer_api.core import policy
from producer_api.core.errors import Unauthorized

# Endpoints that stay open whatever is configured, and those a setting can close.
OPEN_ENDPOINTS = {"root.index", "root.health"}
DOCS_ENDPOINTS = {"docs.openapi_document", "docs.swagger_ui", "docs.swagger_assets"}
METRICS_ENDPOINTS = {"metrics.scrape"}


def _presented_key() -> str | None:
    authorization = request.headers.get("Authorization", "")
    scheme, _, credential = authorization.partition(" ")
    if scheme.lower() == "bearer" and credential.strip():
        return credential.strip()
    return request.headers.get("X-API-Key") or None


def identify(settings: Settings, presented: str | None) -> ApiKey | None:
    """The key matching the presented secret, comparing with every key in constant time."""
    match = None
    for key in settings.api_keys:
        # Compare against every key, so timing says nothing about which one, or how much of one, matched.
        if presented is not None and hmac.compare_digest(key.secret.encode(), presented.encode()):
            match = key
    return match


def _needs_key(settings: Settings, endpoint: str | None) -> bool:
    if not settings.api_keys or endpoint is None or endpoint in OPEN_ENDPOINTS:
        return False
    if endpoint in DOCS_ENDPOINTS:
        return settings.protect_docs
    if endpoint in METRICS_ENDPOINTS:
        return settings.protect_metrics
    return True


def _authenticate() -> None:
    settings = current_app.config["PRODUCER_SETTINGS"]
    g.api_key = None
    if not _needs_key(settings, request.endpoint):
        return
    presented = _presented_key()
    g.api_key = identify(settings, presented)
    if g.api_key is None:
        raise Unauthorized(
            "Missing API key: send Authorization: Bearer <key> or X-API-Key: <key>"
            if presented is None else "Invalid API key"
        )


def authorize_topics(settings: Settings, topics: set[str]) -> None:
    """Refuse (403) the whole request if the topic policy or the caller's key forbids any of its topics."""
    policy.authorize_topics(settings, g.get("api_key"), topics)


def init_app(app: Flask) -> None:
    """Check the caller's API key before any view runs (when keys are configured)."""
    app.before_request(_authenticate)
