"""bench.compare: the variants its flags ask for, the paired ratios and the report."""

import pytest

from bench import compare
from bench.compare import CURRENT, HEADLINE_LOADS, Variant, paired, render, variants


def test_variants_put_the_service_first_then_an_earlier_commit_tuning_off_and_each_change_left_out():
    chosen = variants("2af3179", True, ["batch_append", "headers_with_body"])
    assert [variant.name for variant in chosen] == [CURRENT, "rev:2af3179", "off", "without:batch_append",
                                                   "without:headers_with_body"]
    assert chosen[1].rev == "2af3179" and chosen[1].env == {}
    assert chosen[2].env == {"PRODUCER_TUNING": "off"}
    assert chosen[3].env == {"PRODUCER_TUNING_SKIP": "batch_append"}
    assert len({variant.topic for variant in chosen}) == len(chosen)  # each variant's writes are counted apart


def test_an_unknown_change_is_refused():
    with pytest.raises(ValueError, match="no such tuning"):
        variants(None, False, ["nonsense"])


def test_without_speed_names_every_speed_change(monkeypatch):
    asked = []
    monkeypatch.setattr(compare, "variants", lambda rev, off, without: asked.extend(without) or [])
    monkeypatch.setattr(compare, "bench_cluster", lambda: (_ for _ in ()).throw(SystemExit(0)))
    with pytest.raises(SystemExit):
        compare.main(["--without", "speed"])
    assert asked == [entry.name for entry in compare.tuning.REGISTER if entry.kind == compare.tuning.SPEED]


def _record(repetition: int, variant: str, load: str, rate: float) -> dict:
    return {"repetition": repetition, "variant": variant, "load": load, "rate": rate, "p99_ms": 1.0, "errors": 0,
            "kafka": {"verdict": "ok"}}


def test_ratios_are_taken_within_each_repetition():
    load = HEADLINE_LOADS[0].name
    records = [_record(0, CURRENT, load, 100), _record(0, "off", load, 50),
               _record(1, CURRENT, load, 200), _record(1, "off", load, 150),
               _record(2, "off", load, 10)]  # no service figure in repetition 2: no ratio
    assert paired(records, "off", load) == [0.5, 0.75]


def test_the_report_shows_each_variants_median_ratio():
    records = [_record(repetition, name, load.name, rate * (1 + repetition))
               for repetition in range(3) for load in HEADLINE_LOADS
               for name, rate in ((CURRENT, 1000), (Variant("off", {}).name, 900))]
    text = render(records)
    assert "0.900" in text and "ok" in text
    assert text.count("off") >= 1 + len(HEADLINE_LOADS)
