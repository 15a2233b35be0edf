"""The benchmark's command line: printing the report of a results file an earlier run wrote."""

import json

from bench.__main__ import main

META = {"repetitions": 1, "cpus": 2, "request_bytes": 200, "record_value_bytes": 257, "elapsed_s": 12.0,
        "output": "bench-results/results.json",
        "settings": {"workers": 2, "threads": 16, "linger_ms": 0, "max_in_flight": 2}}


def test_report_prints_a_saved_run_with_its_summary_recomputed(bench_records, tmp_path, capsys):
    saved = tmp_path / "results.json"
    # An older run's file: its summary lacks what the report shows now, and is not what gets printed.
    saved.write_text(json.dumps({"meta": META, "records": bench_records, "summary": {}}))

    assert main(["--report", str(saved)]) == 0

    printed = capsys.readouterr().out
    assert "single @32 >= 0.7 x ceiling B                           0.50     MISSED  (ceiling K: 0.60)" in printed
    section = printed[printed.index("Single-message latency"):].splitlines()
    row = next(line for line in section if line.strip().startswith("service      single @32"))
    assert row.split()[3:] == ["82%", "yes", "10.0", "30.0", "16.0", "16.0", "1.07"]


def test_report_of_a_file_that_is_not_results_says_so(tmp_path, capsys):
    stray = tmp_path / "other.json"
    stray.write_text(json.dumps({"meta": META}))

    assert main(["--report", str(stray)]) == 1
    assert f"bench: {stray} is not a results file this benchmark wrote (KeyError" in capsys.readouterr().err


def test_report_of_a_missing_file_says_so(tmp_path, capsys):
    assert main(["--report", str(tmp_path / "missing.json")]) == 1
    assert "is not a results file this benchmark wrote (FileNotFoundError" in capsys.readouterr().err
