"""The HTTP API (Flask): blueprints, request bodies and their schemas, the OpenAPI document and /docs, API keys,
request logging and metrics, and the one place that maps exceptions to responses."""
