"""What the service tells its operators: Prometheus metrics and JSON log lines, with neither Flask nor kafka-python."""
