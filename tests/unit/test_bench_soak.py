"""The soak's memory trend: which worker grew, and which served the load."""

import pytest

from bench.soak import STEADY_SLOPE_KIB_PER_MIN, trend


def samples(rss_growth_kib_per_min: float) -> list[dict]:
    """Ten minutes of samples: worker 1 busy and growing at the given rate, worker 2 idle and flat."""
    return [{"t": float(t), "rss_kib": {1: 40_000 + rss_growth_kib_per_min * t / 60, 2: 40_000},
             "cpu_s": {1: 0.1 * t, 2: 1.0}} for t in range(0, 601, 10)]


def test_trend_calls_growth_over_the_threshold_growing():
    rows = {row["series"]: row for row in trend(samples(2 * STEADY_SLOPE_KIB_PER_MIN))}
    assert not rows["worker 1"]["steady"]
    assert rows["worker 2"]["steady"]
    assert not rows["all workers"]["steady"]
    assert rows["worker 1"]["second_half_slope_kib_per_min"] == pytest.approx(2 * STEADY_SLOPE_KIB_PER_MIN)


def test_trend_calls_a_flat_worker_steady():
    rows = {row["series"]: row for row in trend(samples(0))}
    assert all(row["steady"] for row in rows.values())


def test_trend_gives_each_workers_cpu_time_over_the_soak():
    rows = {row["series"]: row for row in trend(samples(0))}
    assert rows["worker 1"]["cpu_s"] == 60.0
    assert rows["worker 2"]["cpu_s"] == 0.0
    assert rows["all workers"]["cpu_s"] == 60.0
