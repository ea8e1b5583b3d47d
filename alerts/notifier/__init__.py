"""The notifier (`ioc notifier`): alert transitions from `ioc.alerts` to people's phones.

Routing (`alerts.routing`) decides who hears of a transition; the consumer records those
deliveries in PostgreSQL before committing its offsets; the dispatcher sends them, grouped
per recipient into digests, through four channels (signed webhook, e-mail, Telegram, Zalo
OA), with retries, backoff and a per-recipient rate limit. See the README, "The notifier".
"""

from alerts.notifier.app import NotifierHandle, build_channels, run_notifier

__all__ = ["NotifierHandle", "build_channels", "run_notifier"]
