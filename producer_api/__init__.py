"""Kafka Producer API: HTTP endpoints that write JSON messages to Apache Kafka."""

from __future__ import annotations

from flask import Flask

__version__ = "1.0.0"


def create_app(settings=None, producer=None) -> Flask:
    """Build the Flask app; without a producer it uses the gunicorn worker's producer opened in post_fork."""
    from producer_api.api import auth, docs, observe, produce, root
    from producer_api.api import producer as app_producer
    from producer_api.api.errors import register_error_handlers
    from producer_api.api.json_provider import OrjsonProvider
    from producer_api.api.openapi import build_spec
    from producer_api.config import Settings

    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.json = OrjsonProvider(app)
    app.config.from_mapping(
        PRODUCER_SETTINGS=settings,
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        JSON_SORT_KEYS=False,
    )
    register_error_handlers(app)
    observe.init_app(app)
    auth.init_app(app)
    app_producer.init_app(app, producer)
    for blueprint in (root.bp, produce.bp, docs.bp):
        app.register_blueprint(blueprint)
    app.extensions["openapi"] = build_spec(app, __version__, settings.max_batch_messages, bool(settings.api_keys))
    return app
