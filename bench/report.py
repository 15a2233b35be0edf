"""Medians over repetitions, paired ratios, the checks, and the table printed at the end."""

from __future__ import annotations

from statistics import median

from bench.suite import (
    BASELINE,
    CEILING_A,
    CEILING_A0,
    CEILING_B,
    CEILING_B_LOAD,
    CEILING_K,
    CEILING_S,
    LOADS,
    SERVICE,
    SERVICE_GTHREAD,
)

WRK_CPU_LIMIT_PCT = 80.0  # one wrk thread can use at most 100% of a core
CEILING_B_MARGIN = 1.5    # ceiling B, driven by the same wrk, must be well above the service

# The targets set for the service (README, Benchmark): paired ratios and latency on the 2-core machine.
BATCH_OVER_A = 0.9
BATCH_OVER_C = 2.0
SINGLE_OVER_B = 0.7
SINGLE_P99_MS = 25.0
SINGLE_OVER_C = 1.5
WORKER_RSS_MIB = 150.0

# Share of all cores that gunicorn, the broker and wrk kept busy at which a load counts as saturating the machine:
# from there on requests queue for a core, and their latency follows the rate (Little's law) more than the work.
SATURATED_BUSY_PCT = 80.0


def _find(records: list[dict], repetition: int, config: str, load: str | None = None) -> dict | None:
    return next((record for record in records if record["repetition"] == repetition and record["config"] == config
                 and (load is None or record["load"] == load)), None)


def _rows(records: list[dict]) -> list[tuple[str, str]]:
    """(config, load) of every row of the table, in the order printed."""
    rows = []
    for config in (CEILING_A, CEILING_A0):
        rows += [(config, record["load"]) for record in records if record["config"] == config][:1]
    rows += [(CEILING_B, CEILING_B_LOAD.name), (CEILING_S, CEILING_B_LOAD.name)]
    rows += [(CEILING_K, load.name) for load in LOADS if load.batch == 1]
    rows += [(config, load.name) for config in (SERVICE, BASELINE) for load in LOADS]
    rows += [(SERVICE_GTHREAD, load.name) for load in LOADS
             if any(record["config"] == SERVICE_GTHREAD for record in records)]
    return rows


def medians(records: list[dict]) -> list[dict]:
    """Per configuration and load: median rate and latencies over repetitions, errors summed."""
    summary = []
    for config, load in _rows(records):
        runs = [record for record in records if record["config"] == config and record["load"] == load]
        if not runs:
            continue
        row = {"config": config, "load": load, "unit": runs[0]["unit"], "repetitions": len(runs),
               "rate": median(run["rate"] for run in runs), "rates": [run["rate"] for run in runs],
               "errors": sum(run["errors"] for run in runs)}
        if "p50_ms" in runs[0]:
            row["p50_ms"] = median(run["p50_ms"] for run in runs)
            row["p99_ms"] = median(run["p99_ms"] for run in runs)
        summary.append(row)
    return summary


def paired_ratios(records: list[dict]) -> list[dict]:
    """Ratios taken within each repetition (service over a ceiling or the baseline), then their median."""
    pairs = [(f"service {load.name} / ceiling {name}", (SERVICE, load.name), (config, None))
             for config, name in ((CEILING_A, "A"), (CEILING_A0, "A0 (as shipped)"))
             for load in LOADS if load.batch > 1]
    pairs.append((f"service {CEILING_B_LOAD.name} / ceiling B", (SERVICE, CEILING_B_LOAD.name),
                  (CEILING_B, CEILING_B_LOAD.name)))
    # Where the gap to ceiling B lies: Kafka's part (service / S) and the service's own work (S / B).
    pairs.append((f"service {CEILING_B_LOAD.name} / ceiling S (no Kafka)", (SERVICE, CEILING_B_LOAD.name),
                  (CEILING_S, CEILING_B_LOAD.name)))
    pairs.append((f"ceiling S {CEILING_B_LOAD.name} / ceiling B", (CEILING_S, CEILING_B_LOAD.name),
                  (CEILING_B, CEILING_B_LOAD.name)))
    # Ceiling K is ceiling B plus the Kafka round trip: what no single-message service on this stack can pass.
    pairs.append((f"ceiling K {CEILING_B_LOAD.name} / ceiling B", (CEILING_K, CEILING_B_LOAD.name),
                  (CEILING_B, CEILING_B_LOAD.name)))
    pairs += [(f"service / ceiling K, {load.name}", (SERVICE, load.name), (CEILING_K, load.name))
              for load in LOADS if load.batch == 1]
    pairs += [(f"ceiling K / baseline C, {load.name}", (CEILING_K, load.name), (BASELINE, load.name))
              for load in LOADS if load.batch == 1]
    pairs += [(f"service / baseline C, {load.name}", (SERVICE, load.name), (BASELINE, load.name)) for load in LOADS]
    # --compare-gthread: the service's worker class against gthread, rate and (single messages) p99.
    pairs += [(f"service / {SERVICE_GTHREAD}, {load.name}", (SERVICE, load.name), (SERVICE_GTHREAD, load.name))
              for load in LOADS]
    ratios = []
    for name, top, bottom in pairs:
        values = _paired(records, top, bottom, "rate")
        if values:
            ratios.append({"name": name, "median": median(values), "values": values})
    for load in LOADS:
        values = _paired(records, (SERVICE, load.name), (SERVICE_GTHREAD, load.name), "p99_ms")
        if values:
            ratios.append({"name": f"p99 service / {SERVICE_GTHREAD}, {load.name}", "median": median(values),
                           "values": values})
    return ratios


def _paired(records: list[dict], top: tuple[str, str | None], bottom: tuple[str, str | None], field: str) -> list:
    """A field's ratio of two (config, load) measurements within each repetition that has both."""
    values = []
    for repetition in sorted({record["repetition"] for record in records}):
        above, below = _find(records, repetition, *top), _find(records, repetition, *bottom)
        if above and below and below[field] > 0:
            values.append(above[field] / below[field])
    return values


def latency(records: list[dict], cpus: int) -> list[dict]:
    """Single-message latency per configuration and load, beside Little's law and how busy the machine was.

    With N closed-loop connections the mean latency is N / rate whatever the code does, so a latency figure at a
    load that saturates the cores restates the rate; the figures below saturation are the ones that judge latency.
    """
    rows = []
    for config in (SERVICE, CEILING_K, BASELINE, SERVICE_GTHREAD):
        for load in (load for load in LOADS if load.batch == 1):
            runs = [record for record in records if record["config"] == config and record["load"] == load.name
                    and "wrk" in record]
            if not runs:
                continue
            busy = median(sum(run["cpu_pct_of_one_core"].values()) / cpus for run in runs)
            little = [1000 * load.connections / run["requests_per_s"] for run in runs if run["requests_per_s"] > 0]
            row = {"config": config, "load": load.name, "connections": load.connections, "busy_pct": busy,
                   "saturated": busy >= SATURATED_BUSY_PCT,
                   "p50_ms": median(run["p50_ms"] for run in runs), "p99_ms": median(run["p99_ms"] for run in runs),
                   "mean_ms": median(run["wrk"]["mean_ms"] for run in runs),
                   "littles_law_ms": median(little) if little else None}
            if config == SERVICE:
                ratios = _paired(records, (SERVICE, load.name), (CEILING_K, load.name), "p99_ms")
                row["p99_over_ceiling_k"] = median(ratios) if ratios else None
            rows.append(row)
    return rows


def wrk_check(records: list[dict]) -> dict:
    """Evidence that wrk did not limit the results: its own CPU use, and how far ceiling B is above the service."""
    http = [record for record in records if "wrk" in record]
    busiest = max(http, key=lambda record: record["cpu_pct_of_one_core"]["wrk"])
    ceiling_b = median(record["rate"] for record in http if record["config"] == CEILING_B)
    service_best = max(median(record["rate"] for record in http
                              if record["config"] == SERVICE and record["load"] == load.name)
                       for load in LOADS if load.batch == 1)
    wrk_max = busiest["cpu_pct_of_one_core"]["wrk"]
    passed = wrk_max < WRK_CPU_LIMIT_PCT and ceiling_b >= CEILING_B_MARGIN * service_best
    return {
        "wrk_cpu_pct_max": wrk_max, "wrk_cpu_pct_max_run": f"{busiest['config']} {busiest['load']}",
        "wrk_cpu_pct_median": median(record["cpu_pct_of_one_core"]["wrk"] for record in http),
        "server_cpu_pct_median": median(record["cpu_pct_of_one_core"]["server"] for record in http),
        "broker_cpu_pct_median": median(record["cpu_pct_of_one_core"]["broker"] for record in http),
        "ceiling_b_req_per_s": ceiling_b, "service_best_single_req_per_s": service_best,
        "ceiling_b_over_service_best": ceiling_b / service_best if service_best else None,
        "wrk_not_the_bottleneck": passed,
    }


def kafka_totals(records: list[dict]) -> list[dict]:
    """Per writing configuration: messages acknowledged to the client, messages Kafka holds, failed checks."""
    totals = []
    for config in (CEILING_A, CEILING_A0, CEILING_K, SERVICE, BASELINE, SERVICE_GTHREAD):
        checks = [record["kafka"] for record in records if record["config"] == config and "kafka" in record]
        if checks:
            totals.append({
                "config": config, "runs": len(checks),
                "acknowledged": sum(check["acknowledged"] for check in checks),
                "written": sum(check["written"] for check in checks),
                "extra_unanswered": sum(check["extra"] for check in checks),
                "failed_runs": [check for check in checks if check["verdict"] != "ok"],
            })
    return totals


def cpu_per_message(records: list[dict]) -> list[dict]:
    """For the ceilings A and the service's batches: CPU microseconds a message, of the senders and the broker."""
    rows = []
    for config, load in _rows(records):
        if config not in (CEILING_A, CEILING_A0) and not (config == SERVICE and load.startswith("batch")):
            continue
        runs = [record for record in records if record["config"] == config and record["load"] == load]
        sender = "producers" if config != SERVICE else "server"
        rows.append({"config": config, "load": load,
                     "client_us": median(1e4 * run["cpu_pct_of_one_core"][sender] / run["rate"] for run in runs),
                     "broker_us": median(1e4 * run["cpu_pct_of_one_core"]["broker"] / run["rate"] for run in runs)})
    return rows


def targets(records: list[dict], ratios: list[dict], rows: list[dict]) -> list[dict]:
    """Each target: the measured figure, whether it is met, and what ceiling K reaches on the same measure.

    Ceiling K (ceiling B's app plus the Kafka round trip and nothing else) bounds every single-message target:
    a service that answers only once Kafka acknowledged cannot pass it.
    """
    ratio = {entry["name"]: entry["median"] for entry in ratios}
    p99 = {(row["config"], row["load"]): row.get("p99_ms") for row in rows}
    single = CEILING_B_LOAD.name
    found = []

    def target(goal: str, value: float | None, at_least: float | None = None, at_most: float | None = None,
               bound: float | None = None, unit: str = "") -> None:
        if value is not None:
            met = value >= at_least if at_least is not None else value <= at_most
            found.append({"target": goal, "value": value, "unit": unit, "met": met, "ceiling_k": bound})

    batches = [load for load in LOADS if load.batch > 1]
    for load in batches:
        target(f"{load.name} >= {BATCH_OVER_A} x ceiling A", ratio.get(f"service {load.name} / ceiling A"),
               at_least=BATCH_OVER_A)
    for load in batches:
        target(f"{load.name} >= {BATCH_OVER_C:g} x baseline C", ratio.get(f"service / baseline C, {load.name}"),
               at_least=BATCH_OVER_C)
    target(f"{single} >= {SINGLE_OVER_B} x ceiling B", ratio.get(f"service {single} / ceiling B"),
           at_least=SINGLE_OVER_B, bound=ratio.get(f"ceiling K {single} / ceiling B"))
    target(f"{single} p99 <= {SINGLE_P99_MS:g} ms", p99.get((SERVICE, single)), at_most=SINGLE_P99_MS,
           bound=p99.get((CEILING_K, single)), unit=" ms")
    for load in LOADS:
        if load.batch == 1:
            target(f"{load.name} >= {SINGLE_OVER_C} x baseline C", ratio.get(f"service / baseline C, {load.name}"),
                   at_least=SINGLE_OVER_C, bound=ratio.get(f"ceiling K / baseline C, {load.name}"))
    sizes = [size for record in records if record["config"] == SERVICE for size in record["worker_rss_kib"].values()]
    if sizes:
        target(f"worker RSS <= {WORKER_RSS_MIB:g} MiB (largest at the end of any run)", max(sizes) / 1024,
               at_most=WORKER_RSS_MIB, unit=" MiB")
    return found


def summarize(records: list[dict], cpus: int) -> dict:
    """Everything the table shows, as JSON-ready values."""
    summary = {"medians": medians(records), "paired_ratios": paired_ratios(records), "wrk_check": wrk_check(records),
               "kafka_check": kafka_totals(records), "cpu_per_message": cpu_per_message(records),
               "latency": latency(records, cpus)}
    summary["targets"] = targets(records, summary["paired_ratios"], summary["medians"])
    return summary


def _mib(kib: int) -> str:
    return f"{kib / 1024:.1f}"


def _workers(settings: dict) -> str:
    """The service's workers as run: gthread workers x threads, or gevent workers x connections."""
    if settings.get("worker_class") == "gevent":
        return f"{settings['workers']} gevent workers x {settings['worker_connections']} connections"
    return f"{settings['workers']} gthread workers x {settings['threads']} threads"


def render(records: list[dict], summary: dict, meta: dict) -> str:
    """The human-readable report: results table, ratios, memory, the wrk and Kafka checks."""
    lines = [f"Benchmark: {meta['repetitions']} repetition(s), {_workers(meta['settings'])}, "
             f"linger {meta['settings']['linger_ms']} ms, "
             f"{meta['settings'].get('max_in_flight', 5)} requests in flight, "
             f"request body {meta['request_bytes']} B, record value {meta['record_value_bytes']} B, "
             f"{meta['cpus']} CPUs", ""]
    lines.append(f"{'configuration':<12} {'load':<26} {'rate (median)':>20} {'p50 ms':>8} {'p99 ms':>8} "
                 f"{'errors':>7}  per repetition")
    for row in summary["medians"]:
        latency = (f"{row['p50_ms']:>8.1f} {row['p99_ms']:>8.1f}" if "p50_ms" in row else f"{'-':>8} {'-':>8}")
        per_rep = ", ".join(f"{rate:,.0f}" for rate in row["rates"])
        lines.append(f"{row['config']:<12} {row['load']:<26} {row['rate']:>14,.0f} {row['unit']} {latency} "
                     f"{row['errors']:>7}  [{per_rep}]")
    lines += ["", "Paired ratios (median over repetitions of the ratio within each repetition):"]
    for ratio in summary["paired_ratios"]:
        values = ", ".join(f"{value:.2f}" for value in ratio["values"])
        lines.append(f"  {ratio['name']:<44} {ratio['median']:>6.2f}  [{values}]")
    lines += ["", "Targets (medians of the paired ratios above; ceiling K, the Kafka round trip alone, bounds the "
                  "single-message ones):"]
    for target in summary["targets"]:
        bound = (f"  (ceiling K: {target['ceiling_k']:.2f}{target['unit']})"
                 if target["ceiling_k"] is not None else "")
        lines.append(f"  {target['target']:<52} {target['value']:>7.2f}{target['unit']:<4} "
                     f"{'met' if target['met'] else 'MISSED'}{bound}")
    lines += ["", "Single-message latency (medians). With N connections in a closed loop the mean is N / rate "
                  "(Little's law); where gunicorn,",
              f"the broker and wrk keep {SATURATED_BUSY_PCT:.0f}% or more of all cores busy, requests queue for a "
              f"core and latency restates the rate:",
              f"  {'configuration':<12} {'load':<12} {'busy':>5} {'saturated':>9} {'p50 ms':>7} {'p99 ms':>7} "
              f"{'mean ms':>8} {'N/rate ms':>10} {'p99 / ceiling K (paired)':>25}"]
    for row in summary.get("latency", []):
        little = "-" if row["littles_law_ms"] is None else f"{row['littles_law_ms']:.1f}"
        ratio = "" if row.get("p99_over_ceiling_k") is None else f"{row['p99_over_ceiling_k']:.2f}"
        lines.append(f"  {row['config']:<12} {row['load']:<12} {row['busy_pct']:>4.0f}% "
                     f"{'yes' if row['saturated'] else 'no':>9} {row['p50_ms']:>7.1f} {row['p99_ms']:>7.1f} "
                     f"{row['mean_ms']:>8.1f} {little:>10} {ratio:>25}".rstrip())
    lines += ["", "Worker RSS (MiB, VmRSS) at the end of each run, last repetition:"]
    last = max(record["repetition"] for record in records)
    for config in (SERVICE, BASELINE, SERVICE_GTHREAD):
        for load in LOADS:
            record = _find(records, last, config, load.name)
            if record:
                sizes = " / ".join(_mib(size) for size in record["worker_rss_kib"].values())
                lines.append(f"  {config:<12} {load.name:<16} {sizes}")
    lines += ["", "CPU per message (median over repetitions; worker or producer processes, then the broker):"]
    for row in summary["cpu_per_message"]:
        lines.append(f"  {row['config']:<12} {row['load']:<26} {row['client_us']:>6.1f} us  "
                     f"broker {row['broker_us']:>5.1f} us")
    check = summary["wrk_check"]
    lines += [
        "", "Is wrk the bottleneck? (1 wrk thread; CPU time of wrk from rusage, of gunicorn and the broker from /proc)",
        f"  wrk CPU: max {check['wrk_cpu_pct_max']:.0f}% of one core ({check['wrk_cpu_pct_max_run']}), median "
        f"{check['wrk_cpu_pct_median']:.0f}%; gunicorn median {check['server_cpu_pct_median']:.0f}%, broker median "
        f"{check['broker_cpu_pct_median']:.0f}%",
        f"  ceiling B {check['ceiling_b_req_per_s']:,.0f} req/s = {check['ceiling_b_over_service_best']:.1f}x the "
        f"service's best single-message rate ({check['service_best_single_req_per_s']:,.0f} req/s)",
        "  verdict: " + ("wrk is not the bottleneck" if check["wrk_not_the_bottleneck"] else
                         f"wrk MAY limit the results (wants wrk < {WRK_CPU_LIMIT_PCT:.0f}% and ceiling B >= "
                         f"{CEILING_B_MARGIN}x the service)"),
        "", "Kafka check (end offsets before and after each run vs 2xx responses x messages per request):",
    ]
    for total in summary["kafka_check"]:
        failed = total["failed_runs"]
        lines.append(
            f"  {total['config']:<12} {total['runs']} runs: {total['acknowledged']:,} acknowledged, "
            f"{total['written']:,} in Kafka ({total['extra_unanswered']:,} more: requests in flight when wrk "
            f"stopped) -> {'ok' if not failed else f'{len(failed)} run(s) FAILED: {failed}'}")
    lines += ["", f"took {meta['elapsed_s']:.0f} s; results in {meta['output']}"]
    return "\n".join(lines)
