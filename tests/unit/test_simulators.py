"""Sector simulators: deterministic, valid against the contract, plausible, scenarios work."""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter
from datetime import datetime
from functools import cache
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from foundation.contract.catalog import Catalog, Kpi, default_catalog_path, load_catalog
from foundation.contract.envelope import (
    ContractIndex,
    Event,
    Rejection,
    parse_record,
    validate_event,
)
from producers.simulators import Emission, Scenario, Simulation

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
# Monday 23 November 2026, 09:00 in Bình Phước: offices and schools are open.
MONDAY_9H = datetime(2026, 11, 23, 9, 0, tzinfo=ZONE).timestamp()


@cache
def catalog() -> Catalog:
    return load_catalog()


@cache
def index() -> ContractIndex:
    return ContractIndex(catalog())


SECTORS = [s.id for s in load_catalog().sectors]


def run(
    seconds: float,
    *,
    start: float = MONDAY_9H,
    sectors: list[str] | None = None,
    rate: float = 20.0,
    seed: int = 1,
    scenarios: list[Scenario] | None = None,
    raw: bool = False,
) -> list[Emission]:
    simulation = Simulation(
        catalog(),
        sectors=sectors,
        rate=rate,
        seed=seed,
        start=start,
        scenarios=scenarios or [],
        raw_malformed=raw,
    )
    return simulation.until(start + seconds)


def local_hour(epoch: float) -> int:
    return datetime.fromtimestamp(epoch, ZONE).hour


def test_same_seed_and_clock_give_the_same_events() -> None:
    first = run(300)
    assert first == run(300)
    assert [e.event for e in first] != [e.event for e in run(300, seed=2)]


def test_chunked_and_single_reads_give_the_same_events() -> None:
    """How often the caller asks (the CLI's ticks) does not change what is generated."""
    simulation = Simulation(catalog(), rate=20, seed=1, start=MONDAY_9H)
    chunked = [e for step in range(1, 61) for e in simulation.until(MONDAY_9H + step * 5)]
    assert chunked == run(300)


def test_every_event_is_valid_against_the_contract() -> None:
    emissions = run(1800, rate=10)
    assert len(emissions) > 15000
    problems = Counter(
        outcome.reason
        for e in emissions
        if isinstance(outcome := validate_event(e.event, index(), now=e.at), Rejection)
    )
    assert not problems
    assert all(e.defect is None and e.raw is None for e in emissions)


def test_emissions_come_in_send_time_order_with_unique_ids() -> None:
    emissions = run(600)
    assert [e.at for e in emissions] == sorted(e.at for e in emissions)
    ids = [e.event["event_id"] for e in emissions]
    assert len(ids) == len(set(ids))
    assert all(i.startswith(f"sim1-{int(MONDAY_9H * 1000):x}-") for i in ids)


def test_every_source_and_event_type_of_the_catalog_appears() -> None:
    """Even rare events (school incidents, security incidents) show up within two days."""
    emissions = run(2 * 86400, rate=0.3)
    sources = {e.source for e in emissions}
    types = {(e.sector, e.event["type"]) for e in emissions}
    assert sources == {src.id for s in catalog().sectors for src in s.sources}
    assert types == {(s.id, t.id) for s in catalog().sectors for t in s.event_types}


def test_districts_are_catalog_codes_weighted_toward_dong_xoai() -> None:
    districts = Counter(e.event.get("district") for e in run(1800, rate=10))
    codes = {d.code for d in catalog().districts}
    assert set(districts) - {None} == codes
    ranked = [code for code, _ in districts.most_common() if code is not None]
    assert ranked[0] == "dong-xoai"


def test_traffic_peaks_at_rush_hours_in_local_time() -> None:
    day = run(86400, start=MONDAY_9H - 9 * 3600, sectors=["traffic"], rate=0.3)
    vehicles: dict[int, list[float]] = {}
    speeds: dict[int, list[float]] = {}
    for e in day:
        target = {"vehicle_count": vehicles, "avg_speed": speeds}.get(e.event["type"])
        if target is not None:
            target.setdefault(local_hour(e.at), []).append(e.event["value"])
    mean = {h: statistics.fmean(v) for h, v in vehicles.items()}
    assert mean[7] > 2 * mean[3] and mean[17] > 2 * mean[3]
    assert mean[7] > mean[12] and mean[17] > mean[12]
    assert statistics.fmean(speeds[17]) < statistics.fmean(speeds[3]) - 10


def test_emergency_admissions_peak_in_the_evening() -> None:
    day = run(86400, start=MONDAY_9H - 9 * 3600, sectors=["health"], rate=0.3)
    by_hour = Counter(local_hour(e.at) for e in day if e.event["type"] == "er_admission")
    assert by_hour[20] > 2 * by_hour[4]


def test_public_services_follow_office_hours() -> None:
    day = run(86400, start=MONDAY_9H - 9 * 3600, sectors=["public_services"], rate=0.3)
    by_hour = Counter(local_hour(e.at) for e in day if e.event["type"] == "counter_wait_minutes")
    assert by_hour[9] > 10 * max(by_hour[2], 1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("spike", Scenario("spike")),
        ("silent:health", Scenario("silent", "health")),
        ("late:traffic:dem-xe-ql13", Scenario("late", "traffic", "dem-xe-ql13")),
        ("drift::his-bvdk-tinh", Scenario("drift", None, "his-bvdk-tinh")),
    ],
)
def test_scenario_parses_name_sector_source(text: str, expected: Scenario) -> None:
    assert Scenario.parse(text) == expected


@pytest.mark.parametrize("text", ["", "boom", "spike:a:b:c", "Spike"])
def test_bad_scenario_text_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="expected NAME"):
        Scenario.parse(text)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sectors": ["nowhere"]}, "unknown sector 'nowhere'"),
        ({"rate": 0.0}, "positive"),
        ({"sectors": ["health"], "scenarios": [Scenario("late", "traffic")]}, "not simulated"),
        ({"scenarios": [Scenario("silent", "health", "dem-xe-ql13")]}, "not a source of health"),
    ],
)
def test_bad_simulation_settings_are_value_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Simulation(catalog(), start=MONDAY_9H, **kwargs)  # type: ignore[arg-type]


def test_malformed_events_carry_the_reason_code_the_contract_gives() -> None:
    emissions = run(1800, sectors=["health"], rate=5, scenarios=[Scenario("malformed")])
    broken = [e for e in emissions if e.defect is not None]
    assert 0.07 < len(broken) / len(emissions) < 0.13
    for e in broken:
        outcome = validate_event(e.event, index(), now=e.at)
        assert isinstance(outcome, Rejection) and outcome.reason == e.defect, e.event
    assert len({e.defect for e in broken}) == 7
    for e in emissions:
        if e.defect is None:
            assert isinstance(validate_event(e.event, index(), now=e.at), Event)


def test_raw_malformed_records_are_refused_by_the_worker_with_their_code() -> None:
    """Raw bytes include records that are not JSON at all (bad_json, not_object, empty_batch)."""
    scenarios = [Scenario("malformed", "health")]
    emissions = run(1800, sectors=["health"], rate=5, scenarios=scenarios, raw=True)
    broken = [e for e in emissions if e.defect is not None]
    assert {"bad_json", "not_object", "empty_batch", "unknown_type"} <= {e.defect for e in broken}
    for e in broken:
        assert e.raw is not None and b"\n" not in e.raw
        result = parse_record(e.raw, index(), now=e.at, key=e.source)
        assert not result.events and result.rejections[0].reason == e.defect, e.raw


def test_silent_source_sends_nothing_after_the_scenario_starts() -> None:
    baseline = run(1200, sectors=["health"], rate=5)
    silent = run(1200, sectors=["health"], rate=5, scenarios=[Scenario("silent", after=300)])
    quiet = "his-bvdk-tinh"  # the source the health absence rule watches
    assert any(e.source == quiet and e.at < MONDAY_9H + 300 for e in silent)
    assert not any(e.source == quiet and e.at >= MONDAY_9H + 300 for e in silent)
    assert [e for e in silent if e.source != quiet] == [e for e in baseline if e.source != quiet]


def test_silent_named_source_only_and_for_a_while() -> None:
    scenario = Scenario("silent", "traffic", "dem-xe-ql14", after=60, lasts=300)
    emissions = run(900, sectors=["traffic"], rate=5, scenarios=[scenario])
    times = [e.at - MONDAY_9H for e in emissions if e.source == "dem-xe-ql14"]
    assert times and not any(60 <= t < 360 for t in times)
    assert any(t >= 360 for t in times)
    assert any(e.source == "dem-xe-ql13" and 60 <= e.at - MONDAY_9H < 360 for e in emissions)


def test_a_scenario_naming_only_a_source_applies_to_its_sector() -> None:
    scenario = Scenario.parse("silent::dem-xe-ql13", after=0)
    emissions = run(600, sectors=["health", "traffic"], rate=5, scenarios=[scenario])
    assert not any(e.source == "dem-xe-ql13" for e in emissions)
    assert any(e.source == "his-bvdk-tinh" for e in emissions)
    with pytest.raises(ValueError, match="unknown source 'nowhere'"):
        run(10, scenarios=[Scenario("late", source="nowhere")])


def test_silencing_every_source_ends_the_simulation() -> None:
    scenarios = [Scenario("silent", "health", s.id) for s in catalog().sector("health").sources]  # type: ignore[union-attr]
    simulation = Simulation(catalog(), sectors=["health"], start=MONDAY_9H, scenarios=scenarios)
    assert simulation.next_at == math.inf
    assert list(simulation.emissions()) == []


def test_late_events_are_minutes_old_when_sent_and_otherwise_unchanged() -> None:
    baseline = run(1200, sectors=["traffic"], rate=5)
    late = run(1200, sectors=["traffic"], rate=5, scenarios=[Scenario("late", after=0)])
    assert [e.event["event_id"] for e in late] == [e.event["event_id"] for e in baseline]
    lags = [e.at - _occurred(e) for e in late]
    delayed = [lag for lag in lags if lag > 1]
    assert 0.15 < len(delayed) / len(lags) < 0.25
    assert min(delayed) >= 120 and max(delayed) <= 900
    for e in late:
        assert isinstance(validate_event(e.event, index(), now=e.at), Event)


def _occurred(emission: Emission) -> float:
    return datetime.fromisoformat(emission.event["occurred_at"]).timestamp()


def _aggregate(kpi: Kpi, emissions: list[Emission]) -> float:
    """The KPI over all the emissions' events (districts pooled), roughly as the worker would."""
    values: list[float] = [
        float(e.event.get("value", 0.0)) for e in emissions if e.event["type"] == kpi.event_type
    ]
    aggregation = kpi.aggregation
    if aggregation in ("count", "rate_per_min", "distinct_count"):
        return float(len(values))
    if aggregation == "sum":
        return sum(values)
    if aggregation == "p95":
        return sorted(values)[int(0.95 * (len(values) - 1))]
    if aggregation == "avg":
        return statistics.fmean(values)
    if aggregation == "min":
        return min(values)
    if aggregation == "max":
        return max(values)
    return values[-1]


@pytest.mark.parametrize("sector_id", SECTORS)
def test_spike_lifts_a_rate_of_change_rules_input_beyond_its_change(sector_id: str) -> None:
    """For the spike's 10 minutes the KPI input rises by more than the rule's change."""
    sector = catalog().sector(sector_id)
    assert sector is not None
    rule = next(r for r in sector.alerts if r.kind == "rate_of_change")
    kpi = next(k for k in sector.kpis if k.id == rule.kpi)
    assert rule.change_pct is not None
    spike = [Scenario("spike", after=0, lasts=600)]
    normal = run(1200, sectors=[sector_id], rate=1.5)
    spiked = run(1200, sectors=[sector_id], rate=1.5, scenarios=spike)

    def during(emissions: list[Emission], first: bool) -> float:
        return _aggregate(kpi, [e for e in emissions if (e.at < MONDAY_9H + 600) == first])

    assert during(spiked, True) >= during(normal, True) * (1 + rule.change_pct / 100)
    assert during(spiked, False) == pytest.approx(during(normal, False), rel=0.35)


def _five_second_health(path: Path) -> Catalog:
    """Bình Phước's catalog with the health sector's windows tumbling every 5 s, rules over 5 s."""
    data: dict[str, Any] = yaml.safe_load(default_catalog_path().read_text(encoding="utf-8"))
    health = next(s for s in data["sectors"] if s["id"] == "health")
    for kpi in health["kpis"]:
        kpi["window"] = {"size": "5s", "grace": "2s"}
    for rule in health["alerts"]:
        if rule["kind"] == "rate_of_change":
            rule["over"] = "5s"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), "utf-8")
    return load_catalog(path)


@pytest.mark.parametrize("phase", [0.0, 2.6, 3.1, 3.3, 4.9])
def test_a_spike_starts_on_a_window_boundary_so_one_window_shows_the_whole_jump(
    tmp_path: Path, phase: float
) -> None:
    """Wherever in a window the scenario is due, some window's count is up by the rule's change.

    Started mid-window, a ×2 spike (the rule: +50 %) split over two tumbling windows can
    show two steps of about ×1.4 and no alert: 2.6 to 3.3 s into a 5 s window here.
    """
    cat = _five_second_health(tmp_path / "catalog.yaml")
    health = cat.sector("health")
    assert health is not None
    rule = next(r for r in health.alerts if r.kind == "rate_of_change")
    kpi = next(k for k in health.kpis if k.id == rule.kpi)
    assert rule.change_pct is not None
    start = math.floor(MONDAY_9H / 5) * 5 + phase - 15
    spike = [Scenario("spike", "health", after=15, lasts=30)]
    simulation = Simulation(cat, sectors=["health"], rate=60, seed=3, start=start, scenarios=spike)
    emitted = simulation.until(start + 60)
    counts = Counter(math.floor(e.at / 5) for e in emitted if _is(kpi, e))
    windows = sorted(counts)[1:-1]  # whole windows only
    jump = max(counts[b] / counts[a] for a, b in pairwise(windows))
    assert jump >= (1 + rule.change_pct / 100) * 1.1


def _is(kpi: Kpi, emission: Emission) -> bool:
    return emission.event.get("type") == kpi.event_type


def _crossed(kpi: Kpi, op: str | None, level: float, emissions: list[Emission]) -> bool:
    value = _aggregate(kpi, emissions)
    return value > level if op == "above" else value < level


@pytest.mark.parametrize("sector_id", SECTORS)
def test_drift_moves_a_threshold_rules_input_past_its_raise_level(sector_id: str) -> None:
    """After the ramp the rule's KPI input is past raise; without the drift it is not."""
    sector = catalog().sector(sector_id)
    assert sector is not None
    kpis = {k.id: k for k in sector.kpis}
    drifted = run(1500, sectors=[sector_id], rate=1.5, scenarios=[Scenario("drift", after=0)])
    ramped = [e for e in drifted if e.at >= MONDAY_9H + 900]
    normal = [e for e in run(1500, sectors=[sector_id], rate=1.5) if e.at >= MONDAY_9H + 900]
    tripped = [
        rule.id
        for rule in sector.alerts
        if rule.kind == "threshold"
        and rule.kpi is not None
        and rule.raise_at is not None
        and _crossed(kpis[rule.kpi], rule.op, rule.raise_at, ramped)
        and not _crossed(kpis[rule.kpi], rule.op, rule.raise_at, normal)
    ]
    assert tripped, f"no threshold rule of {sector_id} crossed by the drift"


def test_drift_is_gradual() -> None:
    scenario = Scenario("drift", "health", after=0)
    emissions = run(1200, sectors=["health"], rate=5, scenarios=[scenario])
    occupancy = [
        (e.at - MONDAY_9H, e.event["value"])
        for e in emissions
        if e.event["type"] == "bed_occupancy"
    ]
    first = statistics.fmean(v for t, v in occupancy if t < 120)
    middle = statistics.fmean(v for t, v in occupancy if 420 <= t < 540)
    last = statistics.fmean(v for t, v in occupancy if t >= 900)
    assert first < 88 < middle < 95 < last


def test_jsonl_line_is_the_event_or_the_raw_bytes() -> None:
    emission = run(60, sectors=["health"])[0]
    assert json.loads(emission.line()) == emission.event
    raw = Emission(0.0, "health", "x", {}, raw=b"{oops", defect="bad_json")
    assert raw.line() == b"{oops"
