"""The sector catalog: YAML in, a validated typed model out, problems with file:line."""

from streams.catalog._load import default_catalog_path, load_catalog
from streams.catalog._model import Catalog, District, Sector

__all__ = ["Catalog", "District", "Sector", "default_catalog_path", "load_catalog"]
