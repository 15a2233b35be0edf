"""WSGI apps that exist only for the benchmark: the echo ceiling (B) and the straightforward baseline (C)."""
