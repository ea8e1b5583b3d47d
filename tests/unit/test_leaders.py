"""Leaders and analysts, pure parts: teams and areas in the catalog, team-scoped tokens, signed
links, KPI figures and map colours, the report schedule, report routes, notification links,
the escalate action and the report e-mail."""

from __future__ import annotations

import email
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from alerts.notifier.channels import EmailChannel, Envelope, SmtpConfig
from alerts.notifier.messages import Attachment, Message, MessageContext, render
from alerts.routing import Routing, check_teams, load_routing
from consumers.analysis.areas import map_config, tile_layout
from consumers.analysis.figures import (
    Bucket,
    area_figures,
    area_status,
    combine_groups,
    period_figure,
    province_series,
)
from consumers.analysis.workspace import ALL_SECTORS, Workspace
from consumers.reports.schedule import due_editions
from foundation.auth.links import LinkRejectedError, issue_link, verify_link
from foundation.auth.tokens import issue_token, verify_token
from foundation.contract.alerts import AlertTransition, Fingerprint
from foundation.contract.catalog import Catalog, Kpi, Target, load_catalog
from foundation.errors import CatalogError, RoutingError, SettingsError
from foundation.settings import load_settings
from tests.plugins.alerts import BED_D1, MIN, T0, action, point

SECRET = b"leaders-unit-secret-0123456789abcdef"
ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
COMMUNES = """\
version: 1
province: {id: thu, name_vi: Tỉnh Thử, name_en: Test Province}
area_level: {name_vi: "Xã, phường", name_en: Commune or ward}
districts:
  - {code: xa-a, name_vi: Xã A, name_en: A Commune}
  - {code: xa-b, name_vi: Xã B, name_en: B Commune}
  - {code: phuong-c, name_vi: Phường C, name_en: C Ward, tile: [0, 2]}
  - {code: xa-d, name_vi: Xã D, name_en: D Commune}
  - {code: xa-e, name_vi: Xã E, name_en: E Commune}
teams:
  - {id: to-a, name_vi: Tổ A, name_en: Team A, leader_vi: Phó Chủ tịch A,
     leader_en: Vice-Chairman A, sectors: [water]}
sectors:
  - id: water
    name_vi: Thủy lợi
    name_en: Irrigation
    sources:
      - {id: tram, name_vi: Trạm, name_en: Station, cadence: 1h}
    event_types:
      - {id: level, name_vi: Mực nước, name_en: Water level, unit: cm}
  - id: roads
    name_vi: Đường
    name_en: Roads
    sources:
      - {id: dem, name_vi: Đếm, name_en: Counter, cadence: 1h}
    event_types:
      - {id: car, name_vi: Xe, name_en: Car, measurement: false}
"""


@pytest.fixture(scope="module")
def bp() -> Catalog:
    return load_catalog()


@pytest.fixture
def communes(tmp_path: Path) -> Catalog:
    path = tmp_path / "communes.yaml"
    path.write_text(COMMUNES, encoding="utf-8")
    return load_catalog(path)


# -- the catalog ---------------------------------------------------------------------------


def test_binh_phuoc_has_three_teams_covering_its_eleven_sectors_once(bp: Catalog) -> None:
    """Each sector belongs to exactly one of the three Vice-Chairmen's teams."""
    assert [t.id for t in bp.teams] == ["kinh-te", "van-xa", "noi-chinh"]
    owned = [s for t in bp.teams for s in t.sectors]
    assert sorted(owned) == sorted(s.id for s in bp.sectors)
    assert all(t.leader_vi.startswith("Phó Chủ tịch") for t in bp.teams)
    assert all(d.tile is not None for d in bp.districts)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("sectors: [water]}", "sectors: [water, nowhere]}"),
        (
            "sectors: [water]}",
            "sectors: [water]}\n  - {id: to-b, name_vi: B, name_en: B,"
            " leader_vi: L, leader_en: L, sectors: [water]}",
        ),
        (
            "name_en: C Ward, tile: [0, 2]}",
            "name_en: C Ward, tile: [0, 2]}\n"
            "  - {code: xa-f, name_vi: F, name_en: F, tile: [0, 2]}",
        ),
    ],
    ids=["unknown-sector", "sector-in-two-teams", "tile-taken"],
)
def test_catalog_check_refuses_bad_teams_and_tiles(
    tmp_path: Path, change: str, message: str
) -> None:
    """Unknown sectors, a sector in two teams and two areas on one tile are problems."""
    path = tmp_path / "bad.yaml"
    path.write_text(COMMUNES.replace(change, message, 1), encoding="utf-8")
    with pytest.raises(CatalogError) as caught:
        load_catalog(path)
    assert any(":" in p for p in caught.value.problems)


def test_a_catalog_of_communes_without_positions_gets_a_map(communes: Catalog) -> None:
    """The area level is data; areas without a tile are laid out under the placed ones."""
    layout = tile_layout(communes)
    assert layout["phuong-c"] == (0, 2)
    others = [layout[c] for c in ("xa-a", "xa-b", "xa-d", "xa-e")]
    assert len(set(others)) == 4 and all(row >= 1 for row, _col in others)
    config = map_config(communes)
    assert config["level"]["name_vi"] == "Xã, phường"
    assert config["columns"] >= 3 and len(config["areas"]) == 5


def test_ioc_catalog_check_lists_teams(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The check prints the area level, each team, and the sectors no team follows."""
    import argparse
    import asyncio

    from ioc.commands import catalog as command

    path = tmp_path / "communes.yaml"
    path.write_text(COMMUNES, encoding="utf-8")
    args = argparse.Namespace(file=path)
    assert asyncio.run(command._cmd_catalog_check(args, load_settings())) == 0
    out = capsys.readouterr().out
    assert "1 teams" in out and "areas: Xã, phường" in out
    assert "team to-a: Tổ A · Phó Chủ tịch A · water" in out
    assert "note: no team follows roads" in out


# -- tokens and links ----------------------------------------------------------------------


def test_a_team_token_carries_its_team_and_an_old_token_still_verifies() -> None:
    """`team` is an optional claim: tokens made before it existed stay valid."""
    token, _ = issue_token(
        SECRET, role="leader", name="PCT", sectors=("water",), now=100, ttl=60, team="to-a"
    )
    claims = verify_token(SECRET, token, now=110)
    assert claims.team == "to-a" and claims.sectors == ("water",)
    plain, _ = issue_token(SECRET, role="wall", name="W", sectors=None, now=100, ttl=60)
    assert verify_token(SECRET, plain, now=110).team is None


def _link(**kw: Any) -> str:
    args: dict[str, Any] = {
        "kind": "alert",
        "subject": "abcd1234abcd1234",
        "sector": "health",
        "recipient": "pct-van-xa",
        "name": "Phó Chủ tịch",
        "now": 1000.0,
        "ttl": 3600.0,
    }
    args.update(kw)
    return issue_link(SECRET, **args)[0]


def test_a_link_opens_its_alert_for_its_recipient_until_it_expires() -> None:
    """Claims come back as signed; at expiry the link is refused."""
    link = _link()
    claims = verify_link(SECRET, link, now=2000, kind="alert")
    assert (claims.subject, claims.recipient, claims.name) == (
        "abcd1234abcd1234",
        "pct-van-xa",
        "Phó Chủ tịch",
    )
    with pytest.raises(LinkRejectedError, match="link_expired"):
        verify_link(SECRET, link, now=1000 + 3600, kind="alert")


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (
            lambda link: link[:-2] + ("AA" if not link.endswith("AA") else "BB"),
            "link_bad_signature",
        ),
        (lambda link: link.replace("iol1.", "iot1.", 1), "link_malformed"),
        (lambda link: "iol1.e30.x", "link_bad_signature"),
        (lambda link: "", "link_malformed"),
        (lambda link: link + ".x", "link_malformed"),
    ],
    ids=["altered-signature", "token-prefix", "foreign", "empty", "extra-part"],
)
def test_an_altered_link_is_refused(mangle: Any, reason: str) -> None:
    """Any change to the link, or a link of another key, fails its signature."""
    with pytest.raises(LinkRejectedError) as caught:
        verify_link(SECRET, mangle(_link()), now=1500, kind="alert")
    assert caught.value.reason == reason


def test_claims_swapped_between_links_and_other_keys_are_refused() -> None:
    """A body from one link with the signature of another, a report link used as an alert
    link, and the right link checked with another secret are all refused."""
    first, second = _link(recipient="a"), _link(recipient="b")
    swapped = ".".join([*first.split(".")[:2], second.split(".")[2]])
    with pytest.raises(LinkRejectedError, match="link_bad_signature"):
        verify_link(SECRET, swapped, now=1500, kind="alert")
    with pytest.raises(LinkRejectedError, match="link_wrong_kind"):
        verify_link(
            SECRET, _link(kind="report", subject="t/daily/2026-12-02"), now=1500, kind="alert"
        )
    with pytest.raises(LinkRejectedError, match="link_bad_signature"):
        verify_link(b"another-secret-0123456789abcdef", first, now=1500, kind="alert")
    # …and a link is never a token.
    from foundation.auth.tokens import TokenRejectedError

    with pytest.raises(TokenRejectedError):
        verify_token(SECRET, first, now=1500)


# -- figures and the map -------------------------------------------------------------------


def _kpi(aggregation: str, target: Target | None = None) -> Kpi:
    return Kpi.model_validate(
        {
            "id": "k",
            "name_vi": "K",
            "name_en": "K",
            "event_type": "e",
            "aggregation": aggregation,
            "unit": "u",
            "window": {"size": "1h"},
            "group_by": ["district"],
            "target": target.model_dump() if target else None,
        }
    )


@pytest.mark.parametrize(
    ("aggregation", "expected"),
    [
        ("count", 30.0),
        ("sum", 30.0),
        ("avg", (10 * 1 + 20 * 3) / 4),
        ("min", 10.0),
        ("max", 20.0),
        ("p95", 20.0),
        ("last", 15.0),
    ],
)
def test_areas_combine_into_the_province_as_the_kpi_aggregates(
    aggregation: str, expected: float
) -> None:
    """Counts add up, averages weigh by samples, min/max/p95 take the extreme."""
    assert combine_groups(aggregation, [(10.0, 1), (20.0, 3)]) == pytest.approx(expected)


def test_period_figure_against_target_and_previous_period() -> None:
    """Mean of the buckets, share of buckets on target, change on the period before."""
    kpi = _kpi("avg", Target(value=50, direction="at_most"))
    buckets = [
        Bucket("a", float(t), 1, v, v, v, v, 1)
        for t, v in [(0, 40.0), (1, 40.0), (10, 40.0), (11, 60.0), (12, 70.0), (13, 30.0)]
    ]
    series = province_series(kpi, buckets)
    figure = period_figure(kpi, series, start=10, end=20, previous_start=0)
    assert figure.value == pytest.approx(50.0) and figure.met is True
    assert figure.on_target_share == pytest.approx(0.5)
    assert figure.previous == pytest.approx(40.0)
    assert figure.change == pytest.approx(10.0) and figure.change_pct == pytest.approx(25.0)
    empty = period_figure(kpi, [], start=10, end=20, previous_start=0)
    assert (empty.value, empty.met, empty.on_target_share, empty.change) == (None, None, None, None)


@pytest.mark.parametrize(
    ("target", "value", "status"),
    [
        (Target(value=90, direction="at_most"), 85.0, "met"),
        (Target(value=90, direction="at_most"), 95.0, "near"),  # within 10 %
        (Target(value=90, direction="at_most"), 120.0, "missed"),
        (Target(value=95, direction="at_least"), 96.0, "met"),
        (Target(value=95, direction="at_least"), 80.0, "missed"),
        (Target(value=95, direction="at_least"), None, "nodata"),
        (None, 0.0, "level0"),
        (None, 49.0, "level1"),
        (None, 100.0, "level3"),
    ],
)
def test_map_colours_against_the_target_or_between_the_areas(
    target: Target | None, value: float | None, status: str
) -> None:
    """Green/amber/red against a target; without one, four levels from lowest to highest."""
    assert area_status(target, value, (0.0, 100.0)) == status


def test_area_figures_keep_the_catalog_order_and_mark_areas_without_data() -> None:
    """Each area of the catalog appears once, with `nodata` when it sent nothing."""
    kpi = _kpi("count", Target(value=10, direction="at_most"))
    buckets = [
        Bucket("xa-a", 0.0, 1, 5.0, 5, 5, 5, 5),
        Bucket("xa-b", 0.0, 1, 30.0, 30, 30, 30, 30),
    ]
    found = area_figures(kpi, buckets, ["xa-b", "xa-a", "xa-c"], start=0, end=10)
    assert [(a.code, a.status) for a in found] == [
        ("xa-b", "missed"),
        ("xa-a", "met"),
        ("xa-c", "nodata"),
    ]


def test_workspace_teams_follow_the_token_scope(bp: Catalog) -> None:
    """A team token sees its team; a sector token the teams it touches; an open token every
    team and all sectors."""

    def claims(**kw: Any) -> Any:
        _token, made = issue_token(SECRET, role="leader", name="X", now=0, ttl=10, **kw)
        return made

    team = Workspace.teams_of(
        bp, claims(sectors=("finance", "agriculture", "tourism"), team="kinh-te")
    )
    assert [t["id"] for t in team["teams"]] == ["kinh-te"]
    health = Workspace.teams_of(bp, claims(sectors=("health",)))
    assert [(t["id"], t["sectors"]) for t in health["teams"]] == [("van-xa", ["health"])]
    every = Workspace.teams_of(bp, claims(sectors=None))
    assert [t["id"] for t in every["teams"]] == ["kinh-te", "van-xa", "noi-chinh", ALL_SECTORS]


# -- the schedule, the routing, notifications ----------------------------------------------


def _at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=ZONE).timestamp()


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        ("2026-12-02 06:59", []),  # Wednesday before 07:00: yesterday's is not due yet…
        ("2026-12-02 07:00", [("daily", date(2026, 12, 1))]),
        ("2026-12-02 07:59", [("daily", date(2026, 12, 1))]),
        ("2026-12-07 07:05", [("daily", date(2026, 12, 6)), ("weekly", date(2026, 11, 30))]),
    ],
)
def test_reports_fall_due_at_seven_and_weekly_on_monday(
    now: str, expected: list[tuple[str, date]]
) -> None:
    """Daily at 07:00 for the day before, weekly on Monday for the week before."""
    found = due_editions(_at(now), zone=ZONE, hour=7, catch_up=3600.0)
    assert [(d.edition, d.first_day) for d in found] == expected


def test_a_missed_report_stays_due_for_the_catch_up_only() -> None:
    """Down at 07:00 and back at 09:00: still due; a day and more later: no longer."""
    late = due_editions(_at("2026-12-02 09:00"), zone=ZONE, hour=7, catch_up=3 * 3600)
    assert [(d.edition, d.first_day) for d in late] == [("daily", date(2026, 12, 1))]
    assert due_editions(_at("2026-12-02 11:00"), zone=ZONE, hour=7, catch_up=3 * 3600) == []


def test_report_routes_name_known_teams_and_reach_each_address_once(bp: Catalog) -> None:
    """The demo routing sends each team's report to its Vice-Chairman; the Chairman the
    weekly edition of one team on Telegram; an unknown team is refused."""
    routing = load_routing()
    check_teams(routing, [t.id for t in bp.teams])
    daily = routing.report_targets("noi-chinh", "daily")
    assert {(t.recipient, t.channel) for t in daily} == {
        ("pct-noi-chinh", "email"),
        ("pct-noi-chinh", "telegram"),
    }
    weekly = routing.report_targets("noi-chinh", "weekly")
    assert ("chu-tich", "telegram") in {(t.recipient, t.channel) for t in weekly}
    bad = Routing.model_validate(
        routing.model_dump(by_alias=True) | {"reports": [{"team": "nope", "notify": ["chu-tich"]}]}
    )
    with pytest.raises(RoutingError):
        check_teams(bad, [t.id for t in bp.teams])


def _transition(kind: str = "fire") -> AlertTransition:
    return AlertTransition(
        fingerprint=Fingerprint("fa11fa11fa11fa11"),
        seq=1,
        transition=kind,  # type: ignore[arg-type]
        state="firing",
        previous_state=None,
        rule="r",
        severity="critical",
        labels={"sector": "health"},
        at=1000.0,
        started_at=1000.0,
        value=1.0,
        message_vi="Cảnh báo thử",
        message_en="Test alert",
    )


def test_every_alert_notification_carries_its_recipients_own_link() -> None:
    """The link maker is asked per recipient and alert; digests carry one link per alert."""
    asked: list[tuple[str, str]] = []

    def link(recipient: str, t: AlertTransition) -> str:
        asked.append((recipient, t.fingerprint))
        return f"https://ioc.example/m/{recipient}-{t.fingerprint}"

    context = MessageContext(link=link)
    one = render([_transition()], context, recipient="pct-van-xa")
    assert (
        "Xem và xử lý trên điện thoại: https://ioc.example/m/pct-van-xa-fa11fa11fa11fa11"
        in one.text
    )
    assert one.items[0]["link"].endswith("pct-van-xa-fa11fa11fa11fa11")
    digest = render([_transition(), _transition("escalate")], context, recipient="chu-tich")
    assert digest.text.count("https://ioc.example/m/chu-tich-fa11fa11fa11fa11") == 4  # vi + en
    assert asked[0] == ("pct-van-xa", "fa11fa11fa11fa11")
    assert "https://" not in render([_transition()], MessageContext()).text


def test_notifier_links_are_signed_for_the_routing_recipient(tmp_path: Path) -> None:
    """The notifier's link maker signs with the token secret, under the recipient's name."""
    from alerts.notifier.app import link_maker

    settings = load_settings(
        state_dir=tmp_path,
        gateway_token_secret=SECRET.decode(),
        public_url="https://ioc.binhphuoc.gov.vn",
    )
    make = link_maker(settings, load_routing(), clock=lambda: 1000.0)
    url = make("pct-van-xa", _transition())
    assert url is not None and url.startswith("https://ioc.binhphuoc.gov.vn/m/iol1.")
    claims = verify_link(SECRET, url.rsplit("/", 1)[1], now=1001.0, kind="alert")
    assert claims.name == "Phó Chủ tịch UBND tỉnh phụ trách văn hóa – xã hội"
    assert claims.expires_at == 1000.0 + 72 * 3600 and claims.sector == "health"
    assert make("nobody", _transition()) is None
    with pytest.raises(SettingsError):
        load_settings(public_url="not a url")


def test_a_report_mail_has_text_html_and_the_pdf_attached() -> None:
    """multipart/mixed: text and HTML alternatives, then the PDF; plain alerts stay text."""
    channel = EmailChannel(
        SmtpConfig(host="localhost", port=25, sender="IOC <ioc@x.vn>"), timeout=1
    )
    message = Message(
        "Báo cáo ngày 02/12/2026",
        "tóm tắt",
        [],
        html="<p>Báo cáo</p>",
        attachments=(Attachment("bao-cao.pdf", b"%PDF-1.7 test"),),
    )
    mail = email.message_from_bytes(
        channel.build(Envelope("pct", "pct@x.vn", message, "d-1")).as_bytes()
    )
    assert mail.get_content_type() == "multipart/mixed"
    kinds = [part.get_content_type() for part in mail.walk()]
    assert kinds == [
        "multipart/mixed",
        "multipart/alternative",
        "text/plain",
        "text/html",
        "application/pdf",
    ]
    pdf = next(p for p in mail.walk() if p.get_content_type() == "application/pdf")
    assert pdf.get_filename() == "bao-cao.pdf" and pdf.get_payload(decode=True) == b"%PDF-1.7 test"
    plain = channel.build(Envelope("p", "p@x.vn", Message("s", "t", []), "d-2"))
    assert plain.get_content_type() == "text/plain"


# -- the escalate action -------------------------------------------------------------------


def test_a_leader_escalates_an_open_alert_from_the_phone(new_engine: Any) -> None:
    """`escalate` climbs one level at once under the actor's name, acknowledged or not; a
    pending alert cannot, nor one at the top level."""
    engine = new_engine()
    engine.on_kpi(point(value=97.0), T0)
    assert engine.on_action(action("escalate", BED_D1, at=T0 + 1), T0 + 1).rejected == (
        "not_firing:pending"
    )
    engine.tick(T0 + 10 * MIN)  # fires
    engine.on_action(action("ack", BED_D1, at=T0 + 11 * MIN), T0 + 11 * MIN)
    out, rejected = engine.on_action(
        action("escalate", BED_D1, by="Phó Chủ tịch", at=T0 + 12 * MIN), T0 + 12 * MIN
    )
    assert rejected is None
    assert [(t.transition, t.state, t.escalation_level, t.actor) for t in out] == [
        ("escalate", "acknowledged", 1, "Phó Chủ tịch")
    ]
    engine.on_action(action("escalate", BED_D1, at=T0 + 13 * MIN), T0 + 13 * MIN)
    last = engine.on_action(action("escalate", BED_D1, at=T0 + 14 * MIN), T0 + 14 * MIN)
    assert last.rejected == "top_level"


def test_ioc_tokens_create_team_scopes_the_token_to_the_team(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--team van-xa` signs the team's four sectors and the team; an unknown team is refused;
    `--analysis` prints the workspace's address."""
    import argparse
    import asyncio

    from ioc.commands import tokens as command

    settings = load_settings(state_dir=tmp_path, gateway_token_secret=SECRET.decode())

    def run(**kw: Any) -> int:
        args = argparse.Namespace(
            role="leader",
            name="Phó Chủ tịch",
            sectors=None,
            team=None,
            ttl=None,
            url=False,
            analysis=False,
            json=False,
        )
        vars(args).update(kw)
        return asyncio.run(command._cmd_tokens_create(args, settings))

    assert run(team="van-xa") == 0
    claims = verify_token(SECRET, capsys.readouterr().out.strip(), now=datetime.now().timestamp())
    assert claims.team == "van-xa"
    assert claims.sectors == ("health", "education", "citizen_feedback", "public_services")
    assert run(team="van-xa", analysis=True) == 0
    assert capsys.readouterr().out.startswith("http://127.0.0.1:8080/analysis?token=iot1.")
    with pytest.raises(SettingsError, match="not a team"):
        run(team="nope")
