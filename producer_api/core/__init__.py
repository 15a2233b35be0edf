"""The service's own logic, with neither Flask nor kafka-python: messages and their enrichment, the topic policy,
the errors a client sees, and what a produce request answers."""
