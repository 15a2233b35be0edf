"""The Kafka side, the only package that imports kafka-python: the per-worker producer, its options, the private
parts of kafka-python it calls, Kafka's errors as API errors, and (tuning/) the changes to kafka-python's internals."""
