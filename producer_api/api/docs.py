"""GET /openapi.json and the Swagger UI at /docs, served from a Python package so it works offline."""

from __future__ import annotations

from flask import Blueprint, current_app, send_from_directory
from swagger_ui_bundle import swagger_ui_path

bp = Blueprint("docs", __name__)

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Kafka Producer API - docs</title>
  <link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/assets/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true});
  </script>
</body>
</html>
"""


@bp.get("/openapi.json")
def openapi_document():
    """Return the OpenAPI 3 document generated from the request and response schemas."""
    return current_app.extensions["openapi"]


@bp.get("/docs")
def swagger_ui():
    """Show the interactive API documentation (Swagger UI)."""
    return PAGE, 200, {"Content-Type": "text/html; charset=utf-8"}


@bp.get("/docs/assets/<path:filename>")
def swagger_assets(filename: str):
    """Serve Swagger UI's own scripts and styles from the swagger-ui-bundle package."""
    return send_from_directory(swagger_ui_path, filename, max_age=3600)
