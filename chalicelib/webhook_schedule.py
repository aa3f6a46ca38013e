"""When a webhook delivery is tried again: the Standard Webhooks retry schedule.

After the first attempt fails, the next ones wait 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and
10 h (27.6 hours in all), each spread by up to JITTER of itself so that the deliveries
of many events failing together do not return together. A receiver's Retry-After is
honoured up to MAX_RETRY_AFTER: the wait is the longer of the two. After the last wait's
attempt fails, the delivery is given up.

SQS delays a message by at most 15 minutes, so a longer wait is a chain of hops: the
message carries the time it is due, and each hop sends it on with the rest of the wait
(`next_hop_seconds`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

RETRY_WAITS_SECONDS = (5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 10 * 3600)
ATTEMPTS = 1 + len(RETRY_WAITS_SECONDS)
JITTER = 0.1
MAX_RETRY_AFTER_SECONDS = 24 * 3600
SQS_MAX_DELAY_SECONDS = 15 * 60


@dataclass(frozen=True)
class Retry:
    """The next attempt: its number (2 is the first retry) and the wait before it."""

    attempt: int
    wait_seconds: float


def next_retry(
    failed_attempt: int,
    retry_after_seconds: float | None = None,
    uniform: Callable[[float, float], float] = random.uniform,
    waits: Sequence[float] = RETRY_WAITS_SECONDS,
) -> Retry | None:
    """The retry after attempt number `failed_attempt` (1 is the first) failed, or None
    when it was the last. `waits` replaces the schedule (WEBHOOK_RETRY_SCHEDULE, for tests
    and the local stack)."""
    if not 1 <= failed_attempt <= len(waits):
        return None
    scheduled = waits[failed_attempt - 1]
    wait = scheduled * (1 + uniform(-JITTER, JITTER))
    if retry_after_seconds is not None:
        wait = max(wait, min(retry_after_seconds, MAX_RETRY_AFTER_SECONDS))
    return Retry(failed_attempt + 1, wait)


def next_hop_seconds(due_at: float, now: float) -> int:
    """The SQS delay of the next hop towards `due_at` (Unix seconds): 0 when it is due."""
    return max(0, min(SQS_MAX_DELAY_SECONDS, round(due_at - now)))
