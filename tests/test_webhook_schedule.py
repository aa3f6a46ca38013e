"""The retry schedule of webhook deliveries: Standard Webhooks' waits, jitter, Retry-After,
and the chain of SQS hops a long wait becomes."""

from __future__ import annotations

import random

import pytest

from chalicelib import webhook_schedule as schedule

MIDDLE = 0.0  # a jitter draw of none


def no_jitter(low: float, high: float) -> float:
    assert (low, high) == (-schedule.JITTER, schedule.JITTER)
    return MIDDLE


def test_the_waits_are_the_specifications() -> None:
    waits = [schedule.next_retry(n, uniform=no_jitter) for n in range(1, schedule.ATTEMPTS)]
    assert [r.wait_seconds for r in waits if r] == [5, 300, 1800, 7200, 18000, 36000, 36000]
    assert [r.attempt for r in waits if r] == [2, 3, 4, 5, 6, 7, 8]
    assert sum(schedule.RETRY_WAITS_SECONDS) / 3600 == pytest.approx(27.6, abs=0.02)
    assert schedule.next_retry(schedule.ATTEMPTS) is None
    assert schedule.next_retry(0) is None


def test_jitter_spreads_each_wait_by_up_to_a_tenth() -> None:
    draws = random.Random(7)
    waits = [schedule.next_retry(3, uniform=draws.uniform) for _ in range(500)]
    seconds = [r.wait_seconds for r in waits if r]
    assert 1620 <= min(seconds) < 1650
    assert 1950 < max(seconds) <= 1980
    assert len(set(seconds)) == 500


@pytest.mark.parametrize(
    ("retry_after", "wait"),
    [(None, 300.0), (60.0, 300.0), (3600.0, 3600.0), (10 * 86400.0, 86400.0)],
)
def test_retry_after_lengthens_a_wait_up_to_a_day(retry_after: float | None, wait: float) -> None:
    retry = schedule.next_retry(2, retry_after, uniform=no_jitter)
    assert retry is not None
    assert retry.wait_seconds == wait


def test_a_ten_hour_wait_is_a_chain_of_fifteen_minute_hops() -> None:
    now, due = 1_000_000.0, 1_000_000.0 + 36000
    hops = []
    while (delay := schedule.next_hop_seconds(due, now)) > 0:
        hops.append(delay)
        now += delay
    assert hops == [900] * 40
    assert schedule.next_hop_seconds(due, due + 5) == 0
    assert schedule.next_hop_seconds(due, due - 42.4) == 42
