"""Secrets the station makes for itself when the config leaves them empty."""
from __future__ import annotations

import os
import secrets
from pathlib import Path


def stored_secret(state_dir: Path, name: str, configured: str = "") -> str:
    """``configured`` if set, else a random secret kept in ``state_dir/name`` (mode 600)."""
    if configured:
        return configured
    path = Path(state_dir) / name
    try:
        value = path.read_text(encoding="utf-8").strip()
        if value:
            return value
    except FileNotFoundError:
        pass
    value = secrets.token_urlsafe(24)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(value + "\n")
    return value
