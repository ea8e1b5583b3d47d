"""Typed model of the catalog; validation rules that span entries live in Catalog."""

from __future__ import annotations

from typing import NewType

from pydantic import BaseModel, ConfigDict, Field

from streams.topics import event_topic

__all__ = ["Catalog", "District", "Problem", "Province", "Sector", "SectorId", "cross_check"]

SectorId = NewType("SectorId", str)

_ID = r"^[a-z][a-z0-9_]*$"
_CODE = r"^[a-z][a-z0-9-]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Province(_Strict):
    """Whose operations center this catalog describes."""

    id: str = Field(pattern=_CODE)
    name_vi: str = Field(min_length=1)
    name_en: str = Field(min_length=1)
    timezone: str = "Asia/Ho_Chi_Minh"


class District(_Strict):
    """An area code events may carry (district, town or city of the province)."""

    code: str = Field(pattern=_CODE)
    name_vi: str = Field(min_length=1)
    name_en: str = Field(min_length=1)


class Sector(_Strict):
    """One of the province's sectors; its events travel on their own topic."""

    id: SectorId = Field(pattern=_ID)
    name_vi: str = Field(min_length=1)
    name_en: str = Field(min_length=1)

    @property
    def topic(self) -> str:
        return event_topic(self.id)


class Catalog(_Strict):
    """Everything the platform knows about the province's sectors."""

    version: int = Field(ge=1, le=1)
    province: Province
    districts: list[District] = Field(min_length=1)
    sectors: list[Sector] = Field(min_length=1)

    def sector(self, sector_id: str) -> Sector | None:
        return next((s for s in self.sectors if s.id == sector_id), None)

    @property
    def sector_topics(self) -> list[str]:
        return [s.topic for s in self.sectors]


Problem = tuple[tuple[str | int, ...], str]


def cross_check(catalog: Catalog) -> list[Problem]:
    """Rules that span entries (unique ids, references); each problem with its path."""
    problems: list[Problem] = []
    problems += _duplicates("districts", "code", [d.code for d in catalog.districts])
    problems += _duplicates("sectors", "id", [s.id for s in catalog.sectors])
    return problems


def _duplicates(section: str, field: str, ids: list[str]) -> list[Problem]:
    seen: set[str] = set()
    found: list[Problem] = []
    for index, item in enumerate(ids):
        if item in seen:
            found.append(((section, index, field), f"duplicate {field} {item!r}"))
        seen.add(item)
    return found
