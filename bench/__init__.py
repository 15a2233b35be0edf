"""Benchmark of the producer API: ceilings, a straightforward baseline and the service, measured with wrk.

`python -m bench` starts its own Kafka ('bench', 127.0.0.1:19192), creates 3-partition topics, and in each
repetition starts five gunicorn servers on 18001-18005 (the service, baseline C, ceilings B, S and K) and
measures, interleaved: ceiling A (kafka-python alone, built as the service builds it), A0 (kafka-python as shipped),
ceiling B (bench/apps/echo_app.py), ceiling S (the service with Kafka answering at once, bench/apps/no_kafka_conf.py),
ceiling K (ceiling B plus the Kafka round trip, bench/apps/kafka_echo_app.py, at every single-message load), the
service and baseline C (bench/apps/naive_app.py) at 1, 8, 32 and 128 connections on
POST /produce and with 100 and 1000 messages per POST /produce/batch. Rates count 2xx answers within wrk's run; a
batch still in flight when wrk stops is not counted, so a load with few, slow requests (baseline C at 1000 messages)
reads a little low.
`python -m bench --soak [SECONDS]` instead loads the service steadily and reports its workers' memory trend.
"""
