"""The backfill page message: read and act on one page of a backfill's jobs.

This module is the message's only writer and reader::

    {"kind": "backfill-page", "tenant": str, "backfillId": str, "page": int}

A backfill walks the tenant's jobs one page at a time, each page its own message on the
backfill queue (chalicelib/backfill_pages.py); the backfill record says which page is
next, so a message for any other page is a duplicate or a late redelivery.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from chalicelib import clients
from chalicelib.config import settings

KIND = "backfill-page"


@dataclass(frozen=True)
class PageMessage:
    tenant: str
    backfill_id: str
    page: int

    def to_body(self) -> str:
        return json.dumps(
            {"kind": KIND, "tenant": self.tenant, "backfillId": self.backfill_id, "page": self.page}
        )

    def next(self) -> PageMessage:
        return PageMessage(self.tenant, self.backfill_id, self.page + 1)


def parse(body: str) -> PageMessage | None:
    """The page message in `body`, or None if it is not a well-formed one."""
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    if not isinstance(payload, dict) or payload.get("kind") != KIND:
        return None
    tenant, backfill_id, page = (payload.get(name) for name in ("tenant", "backfillId", "page"))
    if not (isinstance(tenant, str) and tenant and isinstance(backfill_id, str) and backfill_id):
        return None
    if isinstance(page, bool) or not isinstance(page, int) or page < 0:
        return None
    return PageMessage(tenant, backfill_id, page)


def send(message: PageMessage) -> None:
    queue_url = clients.queue_url(settings().backfill_queue)
    with clients.aws_errors(f"send page {message.page} of backfill {message.backfill_id}"):
        clients.sqs().send_message(QueueUrl=queue_url, MessageBody=message.to_body())
