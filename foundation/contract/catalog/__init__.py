"""The sector catalog: YAML in, a validated typed model out, problems with file:line."""

from foundation.contract.catalog._load import default_catalog_path, load_catalog
from foundation.contract.catalog._model import (
    TEMPLATE_FIELDS,
    AlertRule,
    Catalog,
    District,
    EscalationLevel,
    EscalationPolicy,
    EventType,
    Kpi,
    Province,
    Sector,
    Source,
    Target,
    Window,
    cross_check,
    parse_duration,
)

__all__ = [
    "TEMPLATE_FIELDS",
    "AlertRule",
    "Catalog",
    "District",
    "EscalationLevel",
    "EscalationPolicy",
    "EventType",
    "Kpi",
    "Province",
    "Sector",
    "Source",
    "Target",
    "Window",
    "cross_check",
    "default_catalog_path",
    "load_catalog",
    "parse_duration",
]
