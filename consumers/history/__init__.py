"""The history API: KPI series (from points or rollups), latest KPIs of a sector, the events
behind a KPI point, alert history and dead letters, read from the storage tables.

    history = HistoryApi(rows=HistoryStore(pool=…, timeout=10), catalog=…, token_secret=…,
                         keys=key_cache, metrics=HistoryMetrics.create(registry))
    app.add_subapp(PREFIX, history.app())          # GET /v1/history/…

Pure parts: `params` (times, ranges, page sizes, cursors), `queries` (plans and
parameterised SQL), `views` (rows to JSON, the latest-KPI view), `auth` (who may read).
"""

from consumers.history.auth import KeyAuthenticator, Reader, authenticate
from consumers.history.metrics import HistoryMetrics
from consumers.history.queries import HistoryCatalog, Query
from consumers.history.routes import PREFIX, HistoryApi, RowSource
from consumers.history.store import HistoryStore, open_read_pool

__all__ = [
    "PREFIX",
    "HistoryApi",
    "HistoryCatalog",
    "HistoryMetrics",
    "HistoryStore",
    "KeyAuthenticator",
    "Query",
    "Reader",
    "RowSource",
    "authenticate",
    "open_read_pool",
]
