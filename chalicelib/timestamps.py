"""The one timestamp format of the service: ISO 8601 in UTC with a ``Z``.

Job records keep microseconds, so their `createdAt` / `updatedAt` strings compare as the
times they name (the indexes sort on them); a presigned form's `expiresAt` shows seconds.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Literal

Precision = Literal["seconds", "microseconds"]


def iso_utc(moment: datetime, precision: Precision = "microseconds") -> str:
    return moment.astimezone(UTC).isoformat(timespec=precision).replace("+00:00", "Z")


def iso_from_epoch(epoch_seconds: float) -> str:
    return iso_utc(datetime.fromtimestamp(epoch_seconds, UTC))


def now_iso() -> str:
    """Now, as job records write it."""
    return iso_from_epoch(time.time())
