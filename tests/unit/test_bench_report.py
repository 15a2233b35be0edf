"""The benchmark report: each figure checked against its target with ceiling K's bound beside it, and latency."""

import pytest

from bench.report import SATURATED_BUSY_PCT, latency, medians, paired_ratios, targets
from bench.suite import CEILING_A, CEILING_K, LOADS, SERVICE, SERVICE_GTHREAD
from tests.unit.conftest import bench_run


def verdicts(records: list[dict]) -> dict:
    """Target -> (measured value, met, ceiling K's value)."""
    found = targets(records, paired_ratios(records), medians(records))
    return {entry["target"]: (round(entry["value"], 2), entry["met"], entry["ceiling_k"]) for entry in found}


def test_each_target_is_checked_against_its_figure(bench_records):
    found = verdicts(bench_records)

    assert found["batch 100 @8 >= 0.9 x ceiling A"] == (0.95, True, None)
    assert found["batch 1000 @8 >= 2 x baseline C"] == (14.25, True, None)
    assert found["single @32 >= 0.7 x ceiling B"] == (0.5, False, 0.6)
    assert found["single @32 p99 <= 25 ms"] == (30.0, False, 28.0)
    assert found["single @8 >= 1.5 x baseline C"] == (2.0, True, 2.4)
    assert found["worker RSS <= 150 MiB (largest at the end of any run)"] == (160.0, False, None)


def test_a_configuration_not_measured_leaves_its_targets_out(bench_records):
    found = verdicts([record for record in bench_records if record["config"] != CEILING_A])

    assert "batch 100 @8 >= 0.9 x ceiling A" not in found
    assert "single @32 >= 0.7 x ceiling B" in found


def test_latency_sets_each_load_beside_littles_law_and_the_machines_load(bench_records):
    rows = {(row["config"], row["load"]): row for row in latency(bench_records, cpus=2)}

    at_32 = rows[(SERVICE, "single @32")]
    assert at_32["littles_law_ms"] == pytest.approx(16.0)  # 32 connections / 2,000 req/s
    assert at_32["mean_ms"] == pytest.approx(16.0)
    assert at_32["busy_pct"] == pytest.approx(82.5)  # (wrk 5 + gunicorn 140 + broker 20) % of 2 cores
    assert at_32["saturated"]
    assert at_32["p99_over_ceiling_k"] == pytest.approx(30.0 / 28.0)
    assert rows[(SERVICE, "single @1")]["busy_pct"] == pytest.approx(32.5)
    assert not rows[(SERVICE, "single @1")]["saturated"]
    assert "p99_over_ceiling_k" not in rows[(CEILING_K, "single @32")]
    assert not any(row["load"].startswith("batch") for row in rows.values())


def test_latency_calls_a_load_saturated_from_the_threshold_on(bench_records):
    at_8 = [record for record in bench_records if record["config"] == SERVICE and record["load"] == "single @8"]
    at_8[0]["cpu_pct_of_one_core"] = {"wrk": 0.0, "server": 2 * SATURATED_BUSY_PCT - 0.2, "broker": 0.0}
    assert not {row["load"]: row for row in latency(at_8, cpus=2)}["single @8"]["saturated"]

    at_8[0]["cpu_pct_of_one_core"]["broker"] = 0.2
    assert {row["load"]: row for row in latency(at_8, cpus=2)}["single @8"]["saturated"]


def test_the_gthread_service_is_reported_beside_the_service_as_paired_ratios(bench_records):
    gthread = [bench_run(SERVICE_GTHREAD, load.name, 1_600 * load.batch, p99_ms=40.0) for load in LOADS]
    ratios = {entry["name"]: entry["median"] for entry in paired_ratios(bench_records + gthread)}

    assert ratios[f"service / {SERVICE_GTHREAD}, single @32"] == pytest.approx(2_000 / 1_600)
    assert ratios[f"p99 service / {SERVICE_GTHREAD}, single @32"] == pytest.approx(30.0 / 40.0)
    rows = {(row["config"], row["load"]) for row in medians(bench_records + gthread)}
    assert (SERVICE_GTHREAD, "batch 100 @8") in rows
    assert not any(SERVICE_GTHREAD in name for name in
                   (entry["name"] for entry in paired_ratios(bench_records)))
    assert verdicts(bench_records + gthread) == verdicts(bench_records)  # the targets judge the service alone
