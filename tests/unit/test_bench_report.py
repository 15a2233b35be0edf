"""The benchmark report's targets: each figure checked against its target, with ceiling K's bound beside it."""

import pytest

from bench.report import medians, paired_ratios, targets
from bench.suite import BASELINE, CEILING_A, CEILING_B, CEILING_K, LOADS, SERVICE


def run(config: str, load: str, rate: float, p99_ms: float = 10.0, rss_mib: float = 40.0) -> dict:
    """One measured run of the first repetition, with what the report reads from it."""
    return {"repetition": 0, "config": config, "load": load, "rate": rate, "unit": "req/s", "errors": 0,
            "p50_ms": p99_ms / 3, "p99_ms": p99_ms, "worker_rss_kib": {"1": rss_mib * 1024, "2": 1024}}


@pytest.fixture
def records() -> list[dict]:
    """A run where batches reach ceiling A, single messages half of ceiling B, and ceiling K 0.6 of it."""
    found = [run(CEILING_A, "send() x 2 processes", 60_000), run(CEILING_B, "single @32", 4_000)]
    for load in LOADS:
        if load.batch == 1:
            found += [run(SERVICE, load.name, 2_000, p99_ms=30.0), run(CEILING_K, load.name, 2_400, p99_ms=28.0),
                      run(BASELINE, load.name, 1_000)]
        else:
            found += [run(SERVICE, load.name, 57_000, rss_mib=160.0 if load.batch == 1000 else 45.0),
                      run(BASELINE, load.name, 4_000)]
    return found


def verdicts(records: list[dict]) -> dict:
    """Target -> (measured value, met, ceiling K's value)."""
    found = targets(records, paired_ratios(records), medians(records))
    return {entry["target"]: (round(entry["value"], 2), entry["met"], entry["ceiling_k"]) for entry in found}


def test_each_target_is_checked_against_its_figure(records):
    found = verdicts(records)

    assert found["batch 100 @8 >= 0.9 x ceiling A"] == (0.95, True, None)
    assert found["batch 1000 @8 >= 2 x baseline C"] == (14.25, True, None)
    assert found["single @32 >= 0.7 x ceiling B"] == (0.5, False, 0.6)
    assert found["single @32 p99 <= 25 ms"] == (30.0, False, 28.0)
    assert found["single @8 >= 1.5 x baseline C"] == (2.0, True, 2.4)
    assert found["worker RSS <= 150 MiB (largest at the end of any run)"] == (160.0, False, None)


def test_a_configuration_not_measured_leaves_its_targets_out(records):
    found = verdicts([record for record in records if record["config"] != CEILING_A])

    assert "batch 100 @8 >= 0.9 x ceiling A" not in found
    assert "single @32 >= 0.7 x ceiling B" in found
