"""Alert rules: hysteresis, rate of change, fingerprints, messages, config checks."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerts.rules import (
    RuleBook,
    change_percent,
    fingerprint,
    rate_condition,
    threshold_condition,
)
from foundation.contract.catalog import TEMPLATE_FIELDS, AlertRule, Catalog, load_catalog
from foundation.errors import CatalogError
from tests.plugins.alerts import ALERT_CATALOG, make_catalog


def _rule(**fields: object) -> AlertRule:
    base: dict[str, object] = {
        "id": "r", "severity": "warning", "message_vi": "v", "message_en": "e",
    }  # fmt: skip
    return AlertRule.model_validate({**base, **fields})


ABOVE = _rule(kind="threshold", kpi="k", op="above", **{"raise": 95, "clear": 90})
BELOW = _rule(kind="threshold", kpi="k", op="below", **{"raise": 20, "clear": 30})
EXACT = _rule(kind="threshold", kpi="k", op="above", **{"raise": 2})


@pytest.mark.parametrize(
    ("rule", "value", "latched", "expected"),
    [
        (ABOVE, 95.0, False, False),  # "above" is strict
        (ABOVE, 95.1, False, True),
        (ABOVE, 92.0, False, False),  # inside the band: not raised
        (ABOVE, 92.0, True, True),  # inside the band: stays raised (hysteresis)
        (ABOVE, 90.0, True, False),  # at the clear level: cleared
        (ABOVE, 90.1, True, True),
        (BELOW, 20.0, False, False),
        (BELOW, 19.9, False, True),
        (BELOW, 25.0, False, False),
        (BELOW, 25.0, True, True),
        (BELOW, 30.0, True, False),
        (EXACT, 2.0, False, False),  # raise == clear: exact complements
        (EXACT, 3.0, False, True),
        (EXACT, 2.0, True, False),
        (EXACT, 2.5, True, True),
    ],
)
def test_threshold_hysteresis(rule: AlertRule, value: float, latched: bool, expected: bool) -> None:
    """Raise beyond `raise`, clear at or past `clear`, hold in between."""
    assert threshold_condition(rule, value, latched) is expected


@given(value=st.floats(-1e6, 1e6), latched=st.booleans())
def test_threshold_band_never_changes_the_answer(value: float, latched: bool) -> None:
    """Between clear and raise the previous answer always holds; outside it, the value decides."""
    holds = threshold_condition(ABOVE, value, latched)
    if 90 < value <= 95:
        assert holds is latched
    else:
        assert holds is (value > 95)


RISE = _rule(kind="rate_of_change", kpi="k", change_pct=50, over="1h")
FALL = _rule(kind="rate_of_change", kpi="k", change_pct=50, over="1h", op="below")
EITHER = _rule(kind="rate_of_change", kpi="k", change_pct=10, over="1d", op="either")
RISE_HYST = _rule(kind="rate_of_change", kpi="k", change_pct=50, over="1h", **{"clear": 20})


@pytest.mark.parametrize(
    ("rule", "change", "latched", "expected"),
    [
        (RISE, 50.0, False, True),
        (RISE, 49.9, False, False),
        (RISE, -80.0, False, False),
        (RISE, 30.0, True, False),  # no clear level: back under change_pct clears
        (FALL, -50.0, False, True),
        (FALL, 80.0, False, False),
        (EITHER, -12.0, False, True),
        (EITHER, 12.0, False, True),
        (EITHER, 5.0, True, False),
        (RISE_HYST, 30.0, False, False),
        (RISE_HYST, 30.0, True, True),  # between clear and change_pct: holds
        (RISE_HYST, 19.0, True, False),
    ],
)
def test_rate_condition(rule: AlertRule, change: float, latched: bool, expected: bool) -> None:
    """Rise by default, fall with op below, both with op either; `clear` adds hysteresis."""
    assert rate_condition(rule, change, latched) is expected


@pytest.mark.parametrize(
    ("value", "baseline", "expected"),
    [(150.0, 100.0, 50.0), (50.0, 100.0, -50.0), (5.0, -10.0, 150.0), (3.0, 0.0, None)],
)
def test_change_percent(value: float, baseline: float, expected: float | None) -> None:
    """Relative to the baseline's magnitude; no answer from a zero baseline."""
    assert change_percent(value, baseline) == expected


@given(
    rule=st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True),
    labels=st.dictionaries(st.sampled_from(["sector", "kpi", "district", "source"]), st.text()),
)
def test_fingerprint_is_short_stable_hex_whatever_the_label_order(
    rule: str, labels: dict[str, str]
) -> None:
    """16 hex chars, independent of the labels' order, different for another rule."""
    fp = fingerprint(rule, labels)
    assert re.fullmatch(r"[0-9a-f]{16}", fp)
    assert fingerprint(rule, dict(reversed(list(labels.items())))) == fp
    assert fingerprint(rule + "x", labels) != fp


def test_fingerprint_separates_label_boundaries() -> None:
    """Labels that concatenate alike still give different fingerprints."""
    assert fingerprint("r", {"a": "bc"}) != fingerprint("r", {"ab": "c"})


def test_fingerprint_does_not_change_between_releases() -> None:
    """Officers type fingerprints and sinks key on them: the recipe is pinned."""
    labels = {"sector": "health", "kpi": "bed_occupancy_pct"}
    assert fingerprint("bed_occupancy_high", labels) == "853995f79e4c303b"


def test_labels_and_messages_use_the_catalogs_names() -> None:
    """{district} is the district's name (the province without one); Vietnamese decimal comma."""
    book = RuleBook(make_catalog())
    spec = book.by_key["health.bed_high"]
    labels = spec.labels("d1")
    assert labels == {"sector": "health", "kpi": "bed_pct", "district": "d1"}
    vi, en = book.render(spec, labels, value=96.25)
    assert vi == "Công suất giường tại Thành phố Đồng Xoài 96,2% vượt 95%"
    assert en == "Bed occupancy in Dong Xoai City 96.2% above 95%"
    province_vi, province_en = book.render(spec, spec.labels("*"), value=None)
    assert province_vi == "Công suất giường tại Bình Phước —% vượt 95%"
    assert province_en.startswith("Bed occupancy in Binh Phuoc")
    wait = book.by_key["health.wait_long"]
    assert wait.labels("lab") == {"sector": "health", "kpi": "wait_avg", "source": "lab"}
    assert book.render(wait, wait.labels("lab"), value=61)[0] == "Chờ 61 phút tại Xét nghiệm"


def test_every_rule_of_the_default_catalog_renders_in_both_languages() -> None:
    """No placeholder is left unfilled in any of Bình Phước's rules, with or without a value."""
    catalog = load_catalog()
    book = RuleBook(catalog)
    assert len(book.specs) == 43
    for spec in book.specs:
        labels = spec.labels(catalog.districts[0].code)
        for value in (12.5, None):
            for message in book.render(spec, labels, value=value, change=62.5):
                assert "{" not in message and "}" not in message, (spec.key, message)
        context = book.template_context(spec, labels, 1.0, 1.0, vi=True)
        assert context.keys() == TEMPLATE_FIELDS.keys()


def test_thousands_and_decimals_follow_the_language() -> None:
    """1.234,5 in Vietnamese, 1,234.5 in English."""
    data = json.loads(json.dumps(ALERT_CATALOG))
    rule = data["sectors"][1]["alerts"][0]
    rule["message_vi"] = rule["message_en"] = "{value:,.1f}"
    book = RuleBook(Catalog.model_validate(data))
    spec = book.by_key["traffic.speed_low"]
    assert book.render(spec, spec.labels(), value=1234.5) == ("1.234,5", "1,234.5")


def test_provisional_points_of_cumulative_kpis_are_not_used_for_falls() -> None:
    """A count's provisional value only grows: good for rises, misleading for falls."""
    book = RuleBook(make_catalog())
    assert book.by_key["health.visits_surge"].uses_provisional()
    assert not book.by_key["health.visits_drop"].uses_provisional()
    assert book.by_key["health.bed_low"].uses_provisional()  # avg: any point counts


BAD_CATALOGS = [
    (
        'message_vi: "Bad {nonsense}"',
        r"sectors\.0\.alerts\.0\.message_vi: unknown placeholder \{nonsense\}",
    ),
    ('message_vi: "Bad {value:.q}"', r"message_vi: bad template"),
    ("escalation_levels: [{level: 1, role: a, after: 5m}]", r"escalation\.levels: .*numbered"),
    ("escalation_levels: [{level: 0, role: a, after: 5m}]", r"level 0 is reached"),
    (
        "escalation_levels: [{level: 0, role: a}, {level: 1, role: b}]",
        r"level 1 needs 'after'",
    ),
    ("flapping: {transitions: 1, window: 1h}", r"escalation\.flapping\.transitions"),
    ("op: either", r"threshold rule's op is above or below"),
]


@pytest.mark.parametrize(("change", "problem"), BAD_CATALOGS)
def test_bad_alert_config_is_catalog_invalid_with_file_and_line(
    tmp_path: Path, change: str, problem: str
) -> None:
    """Templates and the escalation policy are checked at load, every problem at file:line."""
    lines = [
        "version: 1",
        "province: {id: p, name_vi: P, name_en: P}",
        "districts: [{code: d1, name_vi: D, name_en: D}]",
        "sectors:",
        "  - id: health",
        "    name_vi: Y tế",
        "    name_en: Health",
        "    sources: [{id: his, name_vi: H, name_en: H, cadence: 1m}]",
        "    event_types: [{id: bed, name_vi: B, name_en: B}]",
        "    kpis: [{id: k, name_vi: K, name_en: K, event_type: bed, aggregation: avg,"
        " unit: '%', window: {size: 5m}}]",
        "    alerts:",
        "      - id: r",
        "        kind: threshold",
        "        kpi: k",
        "        op: above",
        "        raise: 1",
        "        severity: critical",
        '        message_vi: "{value}"',
        '        message_en: "{value}"',
        "escalation:",
        "  min_severity: critical",
    ]
    if change.startswith("message_vi"):
        lines[17] = "        " + change
    elif change.startswith("op:"):
        lines[14] = "        " + change
    elif change.startswith("escalation_levels"):
        lines.append("  levels: " + change.split(": ", 1)[1])
    else:
        lines.append("  " + change)
    path = tmp_path / "catalog.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(CatalogError) as caught:
        load_catalog(path)
    assert caught.value.code == "catalog_invalid"
    found = "\n".join(caught.value.problems)
    assert re.search(problem, found), found
    assert re.search(rf"^{re.escape(str(path))}:\d+: ", found, re.MULTILINE)


def test_default_catalog_escalation_policy() -> None:
    """Bình Phước: duty officer, the sector's Vice-Chairman after 10 min, the Chairman 20 later."""
    policy = load_catalog().escalation
    assert [(lv.level, lv.role, lv.after) for lv in policy.levels] == [
        (0, "duty_officer", None),
        (1, "sector_vice_chairman", 600.0),
        (2, "chairman", 1200.0),
    ]
    assert policy.min_severity == "critical"
    assert (policy.flapping.transitions, policy.flapping.window) == (6, 3600.0)
