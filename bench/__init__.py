"""Benchmark of the producer API: ceilings, a straightforward baseline and the service, measured with wrk."""
