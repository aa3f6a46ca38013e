"""The backfill dead-letter handler: a page the backfill function failed on five times
(an AWS fault that outlasted SQS's retries, or a bug) ends its backfill FAILED, visibly,
instead of leaving it running with nothing to move it on. The jobs sent before it are
still reprocessed and counted; `GET /backfills/{id}` shows the error, and starting the
backfill again does no work for the jobs already current.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from chalicelib import backfill_message, backfills, sqs_batch
from chalicelib.observability import logger, metric

PAGE_FAILED = "page_failed"


def handle_backfill_dead_letters(records: Iterable[Mapping[str, object]]) -> None:
    sqs_batch.run_batch(records, _give_up)


def _give_up(record: sqs_batch.SqsRecord) -> None:
    message = backfill_message.parse(record.body)
    if message is None:
        logger.error("backfill message dead-lettered", extra={"messageId": record.message_id})
        return
    ended = backfills.fail(
        message.backfill_id,
        code=PAGE_FAILED,
        message=f"Page {message.page} of the tenant's jobs could not be read; start again.",
    )
    logger.error(
        "backfill page dead-lettered",
        extra={"backfillId": message.backfill_id, "page": message.page, "ended": ended},
    )
    metric("BackfillsFailed", 1)
