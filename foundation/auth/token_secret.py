"""The key that signs tokens: from settings, else generated once into the state directory."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import time

from foundation.errors import StateDirError
from foundation.settings import Settings
from foundation.state_dir import ensure_state_dir

__all__ = ["SECRET_FILE", "token_secret"]

log = logging.getLogger("ioc.gateway")

SECRET_FILE = "gateway-token.secret"  # noqa: S105  (a file name, not a secret)


def token_secret(settings: Settings) -> bytes:
    """IOC_GATEWAY_TOKEN_SECRET, else `<state dir>/gateway-token.secret` (created, mode 0600)."""
    if settings.gateway_token_secret is not None:
        return settings.gateway_token_secret.get_secret_value().encode()
    path = ensure_state_dir(settings.state_dir) / SECRET_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    except OSError as exc:
        raise StateDirError(f"cannot create {path}: {exc.strerror}") from exc
    else:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
        log.info("generated a token secret in %s (set IOC_GATEWAY_TOKEN_SECRET in a cluster)", path)
    # Another process may have created it an instant ago and not written it yet.
    for _attempt in range(50):
        with contextlib.suppress(OSError):
            text = path.read_text().strip()
            if text:
                return text.encode()
        time.sleep(0.02)
    raise StateDirError(f"cannot read the token secret in {path}")
