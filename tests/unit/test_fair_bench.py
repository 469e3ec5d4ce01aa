"""The fair benchmark's summary: the JSON line carries every key the interface names."""

from __future__ import annotations

import json

from bench.fair_bench import QUICK, Phase, Results, summary, table

INTERFACE_KEYS = {
    "raw_publish_consume_per_s",
    "ingest_per_s",
    "ingest_ratio",
    "ingest_cpu_ms",
    "burst_notices",
    "burst_seconds",
    "burst_ratio",
    "burst_cpu_ms",
}


def _results() -> Results:
    return Results(
        sizes=QUICK,
        raw=Phase("raw", 400, 1.0, 0.4),
        ingest=Phase("ingest", 400, 10.0, 8.0, 1.0),
        raw_burst=Phase("raw burst", 900, 2.0, 0.9),
        burst=Phase("burst", 900, 9.0, 7.2, 0.5),
        latencies_ms=[float(n) for n in range(1, 101)],
        steady_sent=100,
        report_bytes=504,
    )


def test_the_summary_holds_the_interface_keys_with_ratios_and_cpu_per_item() -> None:
    line = json.dumps(summary(_results()))
    data = json.loads(line)
    assert set(data) >= INTERFACE_KEYS
    assert data["raw_publish_consume_per_s"] == 400.0
    assert data["ingest_per_s"] == 40.0
    assert data["ingest_ratio"] == 0.1
    assert data["ingest_cpu_ms"] == 20.0
    assert data["burst_notices"] == 900
    assert data["burst_ratio"] == 0.2222
    assert data["burst_cpu_ms"] == 8.0
    # 20,000 notices at 8 ms each over 4 cores
    assert data["burst_20000_on_4_cores_s"] == 40.0
    assert data["steady_p50_ms"] in (50.0, 51.0)
    assert data["steady_p99_ms"] == 99.0


def test_the_table_names_every_phase() -> None:
    text = table(_results())
    for phase in ("raw aio-pika", "ingest", "burst", "steady"):
        assert phase in text


def test_the_matcher_scaling_is_two_matchers_over_one() -> None:
    results = _results()
    results.matchers = (Phase("1 matcher", 400, 4.0, 2.0), Phase("2 matchers", 400, 2.5, 2.2))
    data = summary(results)
    assert (data["matcher_1_per_s"], data["matcher_2_per_s"]) == (100.0, 160.0)
    assert data["matcher_scaling"] == 1.6
    assert data["matcher_cpu_ms"] == 5.0
    assert "2 matchers" in table(results)
