"""Ceiling A: kafka-python alone, one process per service worker, sending the service's records flat out.

Ceiling A runs the producer exactly as the service builds it: the service's options (acks=all, idempotence,
linger, batch size, its key-hash caching partitioner) and its tuning of kafka-python's socket writes, in
a process whose start-up objects are frozen out of full garbage collections as a worker's are.
Ceiling A0 runs kafka-python as shipped, with the same options but its default partitioner, wake-ups, selector
and socket handling: the difference between the two is what the service's changes to the client are worth to send().
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import queue
import threading
import time

from kafka import KafkaProducer
from kafka.partitioner import DefaultPartitioner

from bench.payload import USER_IDS, produce_request
from producer_api.config import Settings
from producer_api.core.messages import to_outgoing
from producer_api.kafka.options import new_kafka_producer
from producer_api.server import heap

MAX_MESSAGES_PER_PROCESS = 5_000_000


def _new_producer(settings: Settings, as_shipped: bool) -> KafkaProducer:
    if as_shipped:
        # The service's options with none of its tuning, and kafka-python's own partitioner.
        return new_kafka_producer(dataclasses.replace(settings, tuning=False), partitioner=DefaultPartitioner())
    return new_kafka_producer(settings)


def _produce(settings: Settings, topic: str, duration_s: float, as_shipped: bool, start, results) -> None:
    """Send records without waiting for each (send() only), flush at the end, and report the counts."""
    try:
        producer = _new_producer(settings, as_shipped)
        records = [to_outgoing(produce_request(topic, user), settings.client_id) for user in USER_IDS]
        producer.send(topic, key=records[0].key, value=records[0].value).get(timeout=30)  # metadata, connection
        if not as_shipped:
            heap.freeze_startup_objects()  # as a service worker does once it has started
        start.wait(timeout=60)
        began, cpu_began = time.monotonic(), time.process_time()
        deadline = began + duration_s
        sent = 0
        while sent < MAX_MESSAGES_PER_PROCESS and time.monotonic() < deadline:
            for record in records:
                producer.send(topic, key=record.key, value=record.value)
            sent += len(records)
        producer.flush(timeout=60)
        elapsed, cpu = time.monotonic() - began, time.process_time() - cpu_began
        producer.close(timeout=10)
        results.put({"messages": sent, "written": sent + 1, "seconds": elapsed, "cpu_s": cpu,
                     "value_bytes": len(records[0].value)})
    except Exception as error:  # noqa: BLE001 - reported to the parent, which fails the run
        start.abort()  # release the parent and the other producers at once
        results.put({"error": f"{type(error).__name__}: {error}"})


def _first_report(results) -> object:
    try:
        return results.get(timeout=5)
    except queue.Empty:
        return "no report"


def run_ceiling(settings: Settings, topic: str, processes: int, duration_s: float, as_shipped: bool = False) -> dict:
    """Run the producers side by side for about duration_s and return messages/s over all of them."""
    context = multiprocessing.get_context("spawn")  # a producer's I/O thread must not cross a fork
    start = context.Barrier(processes + 1)
    results = context.Queue()
    arguments = (settings, topic, duration_s, as_shipped, start, results)
    workers = [context.Process(target=_produce, args=arguments, daemon=True) for _ in range(processes)]
    for worker in workers:
        worker.start()
    try:
        start.wait(timeout=90)
        reports = [results.get(timeout=duration_s + 120) for _ in workers]
    except threading.BrokenBarrierError:
        raise RuntimeError(f"a ceiling A producer failed before the start: {_first_report(results)}") from None
    except queue.Empty:
        raise RuntimeError("ceiling A producers did not report in time") from None
    finally:
        for worker in workers:
            worker.join(timeout=30)
            if worker.is_alive():
                worker.terminate()
                worker.join(timeout=10)
    failures = [report["error"] for report in reports if "error" in report]
    if failures:
        raise RuntimeError(f"ceiling A producer failed: {failures[0]}")
    messages = sum(report["messages"] for report in reports)
    seconds = max(report["seconds"] for report in reports)
    return {"processes": processes, "messages": messages, "duration_s": seconds, "rate": messages / seconds,
            "cpu_s": sum(report["cpu_s"] for report in reports),
            "written_expected": sum(report["written"] for report in reports),
            "value_bytes": reports[0]["value_bytes"]}
