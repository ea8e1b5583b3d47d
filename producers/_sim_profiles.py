"""Numbers that make simulated events plausible, keyed by the default catalog's ids.

Display names live in the catalog; this module only knows ids, rates, value ranges and
daily shapes. An id the catalog has and this module lacks gets a generic profile, so a
custom catalog still simulates (less plausibly).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

__all__ = [
    "DISTRICT_WEIGHTS",
    "GENERIC_TYPE",
    "PROFILES",
    "SectorProfile",
    "TypeProfile",
    "cycle_level",
]

DataMaker = Callable[[random.Random], dict[str, Any]]


@dataclass(frozen=True)
class TypeProfile:
    """How often an event type happens and what values it carries."""

    weight: float = 1.0  # share of the sector's event volume (scales with --rate)
    per_hour: float | None = None  # or: a fixed province-wide rate, for rare events
    rate_cycle: str = "flat"  # daily shape of how often it happens
    mean: float = 50.0
    sd: float = 5.0  # normal: standard deviation; lognormal: sigma
    dist: Literal["normal", "lognormal"] = "normal"
    value_cycle: str = "flat"
    swing: float = 0.0  # value += swing × (cycle level − 1)
    lo: float = 0.0
    hi: float = math.inf
    decimals: int = 1
    share: float | None = None  # value is 100 with this probability, else 0 (share KPIs)
    data: DataMaker | None = None


@dataclass(frozen=True)
class SectorProfile:
    """Which source sends which types (the first one keeps the source fresh), and where."""

    emits: dict[str, tuple[str, ...]]
    types: dict[str, TypeProfile]
    # source → area codes it reports from; () = no district; absent = the whole province
    places: dict[str, tuple[str, ...]] = field(default_factory=dict)


GENERIC_TYPE = TypeProfile()

# Relative size of each area (people and activity); Đồng Xoài, the provincial city, leads.
DISTRICT_WEIGHTS: dict[str, float] = {
    "dong-xoai": 3.0, "chon-thanh": 1.5, "bu-dang": 1.4, "dong-phu": 1.2, "loc-ninh": 1.2,
    "binh-long": 1.0, "phuoc-long": 1.0, "hon-quan": 1.0, "phu-rieng": 1.0,
    "bu-gia-map": 0.9, "bu-dop": 0.7,
}  # fmt: skip


# --- daily shapes: (local hour 0–24, weekday 0 = Monday) → relative level ---------------


def _bump(hour: float, centre: float, width: float) -> float:
    distance = min(abs(hour - centre), 24.0 - abs(hour - centre))
    return math.exp(-0.5 * (distance / width) ** 2)


def _awake(hour: float) -> float:
    """About 1 from 6h to 21h, about 0 at night, with soft edges."""
    return 1.0 / (1.0 + math.exp(-2.0 * (hour - 6.0))) - 1.0 / (
        1.0 + math.exp(-2.0 * (hour - 21.0))
    )


def _office(hour: float, weekday: int) -> float:
    open_hours = 7.5 <= hour < 11.5 or 13.5 <= hour < 17.0
    if weekday >= 5:
        return 0.15 if open_hours and weekday == 5 else 0.03
    return 1.0 if open_hours else 0.04


def _school(hour: float, weekday: int) -> float:
    in_class = 7.0 <= hour < 11.0 or 13.5 <= hour < 16.5
    return 1.0 if in_class and weekday < 5 else 0.02


def _commute(hour: float, weekday: int) -> float:
    """Traffic: morning and evening rush hours."""
    return 0.12 + 0.6 * _awake(hour) + 1.6 * _bump(hour, 7.0, 1.0) + 1.4 * _bump(hour, 17.2, 1.2)


def _evening(hour: float, weekday: int) -> float:
    """Emergency admissions, app use: an evening peak."""
    return 0.3 + 0.5 * _awake(hour) + 1.2 * _bump(hour, 19.5, 2.0)


def _daytime(hour: float, weekday: int) -> float:
    return 0.1 + max(0.0, math.sin(math.pi * (hour - 6.0) / 13.0))


def _night(hour: float, weekday: int) -> float:
    """Public-order calls: late evening and night."""
    return 0.5 + 1.5 * _bump(hour, 23.0, 2.5)


def _heat(hour: float, weekday: int) -> float:
    """The heat of the afternoon: fire danger, soil drying."""
    return 0.3 + 1.5 * _bump(hour, 14.5, 2.5)


def _leisure(hour: float, weekday: int) -> float:
    """Tourism: daytime, twice as busy at the weekend."""
    return (0.05 + max(0.0, math.sin(math.pi * (hour - 7.0) / 11.0))) * (
        2.0 if weekday >= 5 else 1.0
    )


def _flat(hour: float, weekday: int) -> float:
    return 1.0


_SHAPES: dict[str, Callable[[float, int], float]] = {
    "flat": _flat,
    "commute": _commute,
    "evening": _evening,
    "office": _office,
    "school": _school,
    "daytime": _daytime,
    "night": _night,
    "heat": _heat,
    "leisure": _leisure,
}


def _mean_over_week(shape: Callable[[float, int], float]) -> float:
    samples = [shape(q / 4.0, day) for day in range(7) for q in range(96)]
    return sum(samples) / len(samples)


_MEANS = {name: _mean_over_week(shape) for name, shape in _SHAPES.items()}


def cycle_level(name: str, local: datetime) -> float:
    """The shape's level at a local time, normalised so its weekly mean is 1."""
    shape = _SHAPES.get(name, _SHAPES["flat"])
    hour = local.hour + local.minute / 60.0 + local.second / 3600.0
    return shape(hour, local.weekday()) / _MEANS.get(name, 1.0)


# --- data makers (machine codes; names for people belong in the catalog) ------------------


def _pick(key: str, *choices: str) -> DataMaker:
    return lambda rng: {key: rng.choice(choices)}


def _test_net_ip(rng: random.Random) -> dict[str, Any]:
    # Documentation ranges (RFC 5737): plausible-looking, never a real attacker.
    net = rng.choice(("192.0.2", "198.51.100", "203.0.113"))
    return {"src_ip": f"{net}.{rng.randrange(1, 255)}", "attack": rng.choice(_ATTACKS)}


_ATTACKS = ("sqli", "xss", "bruteforce", "scan", "path_traversal")

PROFILES: dict[str, SectorProfile] = {
    "health": SectorProfile(
        emits={
            "his-bvdk-tinh": ("bed_occupancy", "er_admission", "er_wait_minutes"),
            "his-ttyt-huyen": ("bed_occupancy", "er_admission", "er_wait_minutes"),
            "cdc-giam-sat": ("disease_case",),
        },
        places={
            "his-bvdk-tinh": ("dong-xoai",),
            "his-ttyt-huyen": (
                "binh-long",
                "phuoc-long",
                "chon-thanh",
                "bu-dang",
                "bu-dop",
                "bu-gia-map",
                "dong-phu",
                "hon-quan",
                "loc-ninh",
                "phu-rieng",
            ),
        },
        types={
            "er_admission": TypeProfile(
                weight=3, rate_cycle="evening", data=_pick("triage", "1", "2", "3", "4", "5")
            ),
            "bed_occupancy": TypeProfile(
                weight=1, mean=82, sd=4, value_cycle="evening", swing=3, lo=30, hi=100
            ),
            "er_wait_minutes": TypeProfile(
                weight=2, mean=14, sd=6, value_cycle="evening", swing=5, lo=1, hi=240, decimals=0
            ),
            "disease_case": TypeProfile(
                per_hour=2,
                rate_cycle="daytime",
                data=_pick("disease", "dengue", "hand_foot_mouth", "influenza", "diarrhoea"),
            ),
        },
    ),
    "traffic": SectorProfile(
        emits={
            "dem-xe-ql13": ("vehicle_count", "avg_speed"),
            "dem-xe-ql14": ("vehicle_count", "avg_speed"),
            "camera-ai-giao-thong": ("traffic_violation",),
            "csgt-cong-an-tinh": ("traffic_violation", "accident"),
        },
        places={
            "dem-xe-ql13": ("chon-thanh", "hon-quan", "binh-long", "loc-ninh"),
            "dem-xe-ql14": ("chon-thanh", "dong-xoai", "dong-phu", "bu-dang"),
        },
        types={
            "vehicle_count": TypeProfile(
                weight=4, mean=40, sd=8, value_cycle="commute", swing=30, decimals=0
            ),
            "avg_speed": TypeProfile(
                weight=2, mean=48, sd=6, value_cycle="commute", swing=-10, lo=3, hi=120
            ),
            "traffic_violation": TypeProfile(
                weight=1.5,
                rate_cycle="commute",
                data=_pick("violation", "red_light", "wrong_lane", "speeding", "no_helmet"),
            ),
            "accident": TypeProfile(
                per_hour=0.3, rate_cycle="commute", data=_pick("vehicles", "1", "2", "3")
            ),
        },
    ),
    "environment": SectorProfile(
        emits={
            "quan-trac-khong-khi": ("aqi", "pm25"),
            "quan-trac-nuoc-mat": ("dissolved_oxygen",),
            "nuoc-thai-kcn": ("wastewater_cod",),
        },
        places={
            "quan-trac-nuoc-mat": ("dong-xoai", "phuoc-long", "bu-dang", "dong-phu", "binh-long"),
            "nuoc-thai-kcn": ("chon-thanh", "dong-xoai", "dong-phu", "hon-quan"),
        },
        types={
            "aqi": TypeProfile(mean=62, sd=10, value_cycle="commute", swing=15, hi=500, decimals=0),
            "pm25": TypeProfile(mean=24, sd=5, value_cycle="commute", swing=8, lo=1, hi=500),
            "dissolved_oxygen": TypeProfile(
                weight=0.5, mean=6.2, sd=0.4, value_cycle="daytime", swing=0.8, hi=14, decimals=2
            ),
            "wastewater_cod": TypeProfile(
                mean=70, sd=12, value_cycle="office", swing=10, lo=5, hi=1000, decimals=0
            ),
        },
    ),
    "education": SectorProfile(
        emits={
            "qlth-diem-danh": ("attendance_rate", "unexcused_absence"),
            "tuyen-sinh-truc-tuyen": ("admission_application",),
            "csdl-nganh-giao-duc": ("attendance_rate", "school_incident"),
        },
        types={
            "attendance_rate": TypeProfile(
                weight=2, rate_cycle="school", mean=96.5, sd=1.8, lo=50, hi=100
            ),
            "unexcused_absence": TypeProfile(
                weight=2, rate_cycle="school", data=_pick("level", "primary", "lower", "upper")
            ),
            "admission_application": TypeProfile(
                rate_cycle="evening", data=_pick("grade", "preschool", "1", "6", "10")
            ),
            "school_incident": TypeProfile(
                per_hour=0.1,
                rate_cycle="school",
                data=_pick("kind", "injury", "food_safety", "fight", "traffic"),
            ),
        },
    ),
    "public_services": SectorProfile(
        emits={
            "cong-dvc-tinh": ("application_received", "application_resolved"),
            "mot-cua-dien-tu": ("application_resolved", "application_received"),
            "xep-hang-phvhcc": ("counter_wait_minutes",),
        },
        places={"xep-hang-phvhcc": ("dong-xoai",)},
        types={
            "application_received": TypeProfile(
                weight=3,
                rate_cycle="office",
                share=0.86,
                data=_pick(
                    "procedure", "birth", "land_use", "business", "construction", "judicial"
                ),
            ),
            "application_resolved": TypeProfile(weight=2, rate_cycle="office", share=0.985),
            "counter_wait_minutes": TypeProfile(
                rate_cycle="office", mean=9, sd=4, value_cycle="office", swing=3, hi=180, decimals=0
            ),
        },
    ),
    "public_order": SectorProfile(
        emits={
            "trung-tam-chi-huy-113": ("call_113", "incident", "response_minutes"),
            "camera-an-ninh": ("crowd_size", "incident"),
            "pccc-114": ("response_minutes", "fire_report"),
        },
        types={
            "call_113": TypeProfile(
                weight=3,
                rate_cycle="night",
                data=_pick("category", "disturbance", "theft", "fight", "traffic", "other"),
            ),
            "incident": TypeProfile(
                rate_cycle="night",
                data=_pick("category", "theft", "fight", "gambling", "disorder", "drugs"),
            ),
            "response_minutes": TypeProfile(
                rate_cycle="night", mean=9, sd=3.5, lo=2, hi=120, decimals=0
            ),
            "crowd_size": TypeProfile(
                weight=1.5, rate_cycle="evening", mean=25, sd=15, lo=5, hi=5000, decimals=0
            ),
            "fire_report": TypeProfile(
                per_hour=0.2,
                rate_cycle="heat",
                data=_pick("kind", "house", "forest", "factory", "vehicle"),
            ),
        },
    ),
    "tourism": SectorProfile(
        emits={
            "quan-ly-luu-tru": ("room_occupancy", "guest_check_in"),
            "ve-dien-tu-diem-du-lich": ("ticket_sale",),
            "app-du-lich-thong-minh": ("visitor_rating", "tourist_complaint"),
        },
        places={"ve-dien-tu-diem-du-lich": ("phuoc-long", "bu-gia-map", "bu-dang", "loc-ninh")},
        types={
            "guest_check_in": TypeProfile(
                rate_cycle="evening", data=lambda rng: {"foreign": rng.random() < 0.04}
            ),
            "room_occupancy": TypeProfile(
                mean=58, sd=8, value_cycle="leisure", swing=10, hi=100, decimals=0
            ),
            "ticket_sale": TypeProfile(
                weight=2, rate_cycle="leisure", mean=4, sd=3, lo=1, hi=60, decimals=0
            ),
            "visitor_rating": TypeProfile(weight=0.5, mean=4.3, sd=0.5, lo=1, hi=5, decimals=0),
            "tourist_complaint": TypeProfile(
                per_hour=0.2,
                rate_cycle="leisure",
                data=_pick("topic", "price", "hygiene", "service", "safety"),
            ),
        },
    ),
    "finance": SectorProfile(
        emits={
            "kbnn-tabmis": (
                "expenditure_paid",
                "revenue_collected",
                "payment_processing_hours",
                "payment_rejected",
            ),
            "thue-tinh": ("revenue_collected",),
            "dau-tu-cong": ("disbursement_progress",),
        },
        types={
            "revenue_collected": TypeProfile(
                weight=2, rate_cycle="office", mean=120, sd=1.0, dist="lognormal", hi=1e6
            ),
            "expenditure_paid": TypeProfile(
                weight=2, rate_cycle="office", mean=250, sd=1.0, dist="lognormal", hi=1e6
            ),
            "payment_processing_hours": TypeProfile(
                rate_cycle="office", mean=3, sd=1.5, lo=0.2, hi=72
            ),
            "payment_rejected": TypeProfile(
                weight=0.2,
                rate_cycle="office",
                data=_pick("reason", "missing_document", "over_estimate", "wrong_account"),
            ),
            "disbursement_progress": TypeProfile(weight=0.1, mean=55, sd=0.8, hi=100),
        },
    ),
    "agriculture": SectorProfile(
        emits={
            "kiem-lam-chay-rung": ("forest_fire_danger", "fire_hotspot"),
            "chan-nuoi-thu-y": ("animal_disease_outbreak",),
            "cam-bien-nong-nghiep": ("soil_moisture",),
            "gia-nong-san": ("cashew_price",),
        },
        places={
            "kiem-lam-chay-rung": (
                "bu-gia-map",
                "bu-dang",
                "phuoc-long",
                "loc-ninh",
                "bu-dop",
                "dong-phu",
                "hon-quan",
            ),
        },
        types={
            "forest_fire_danger": TypeProfile(
                mean=2.0, sd=0.2, value_cycle="heat", swing=0.6, lo=1, hi=5, decimals=0
            ),
            "fire_hotspot": TypeProfile(per_hour=0.1, rate_cycle="heat"),
            "animal_disease_outbreak": TypeProfile(
                per_hour=0.1,
                data=_pick("disease", "african_swine_fever", "lumpy_skin", "avian_influenza"),
            ),
            "soil_moisture": TypeProfile(mean=34, sd=3, value_cycle="heat", swing=-4, hi=100),
            "cashew_price": TypeProfile(
                weight=0.3, mean=32000, sd=300, lo=10000, hi=100000, decimals=-2
            ),
        },
    ),
    "citizen_feedback": SectorProfile(
        emits={
            "tong-dai-1022": ("feedback_received",),
            "app-cong-dan": ("feedback_received", "citizen_satisfaction"),
            "xu-ly-phan-anh": ("feedback_resolved", "resolution_hours", "citizen_satisfaction"),
        },
        types={
            "feedback_received": TypeProfile(
                weight=3,
                rate_cycle="evening",
                data=_pick("category", "road", "environment", "order", "land", "admin", "utility"),
            ),
            "feedback_resolved": TypeProfile(weight=1.5, rate_cycle="office", share=0.93),
            "resolution_hours": TypeProfile(
                weight=1.5, rate_cycle="office", mean=16, sd=0.8, dist="lognormal", lo=0.5, hi=720
            ),
            "citizen_satisfaction": TypeProfile(rate_cycle="evening", share=0.85),
        },
    ),
    "infosec": SectorProfile(
        emits={
            "soc-tinh": ("attack_blocked", "security_incident", "malware_detected"),
            "waf-cong-ttdt": ("attack_blocked",),
            "giam-sat-website": ("website_up", "website_response_ms"),
        },
        places={"waf-cong-ttdt": ()},
        types={
            "attack_blocked": TypeProfile(weight=4, rate_cycle="night", data=_test_net_ip),
            "security_incident": TypeProfile(
                per_hour=0.1, data=_pick("level", "low", "medium", "high")
            ),
            "malware_detected": TypeProfile(
                per_hour=0.5,
                rate_cycle="office",
                data=_pick("family", "trojan", "ransomware", "miner", "worm"),
            ),
            "website_up": TypeProfile(share=0.998),
            "website_response_ms": TypeProfile(
                mean=450,
                sd=0.45,
                dist="lognormal",
                value_cycle="office",
                swing=150,
                lo=20,
                hi=60000,
                decimals=0,
            ),
        },
    ),
}
