"""The reprocess dead-letter handler: a reprocess message that failed maxReceiveCount
times ends here. Its job keeps its outputs; its pending request is cleared and
`reprocessError` recorded, so a job is never left `reprocessing`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from chalicelib import jobs, reprocess_message, sqs_batch
from chalicelib.errors import PROCESSING_FAILED
from chalicelib.observability import job_fields, logger, metric

GIVEN_UP = "Reprocessing failed repeatedly and was given up; the job keeps its outputs."


def handle_reprocess_dead_letters(records: Iterable[Mapping[str, object]]) -> None:
    sqs_batch.run_batch(records, _give_up)


def _give_up(record: sqs_batch.SqsRecord) -> None:
    message = reprocess_message.parse(record.body)
    if message is None:
        logger.error(
            "dead letter is not a reprocess message", extra={"messageId": record.message_id}
        )
        return
    error = {"code": PROCESSING_FAILED, "message": GIVEN_UP}
    ended = jobs.end_reprocessing(message.job_id, None, error=error)
    if not ended.moved:
        logger.error(
            "dropping reprocess dead letter of an unknown job", extra=job_fields(message.job_id)
        )
        return
    logger.warning(
        "reprocess given up", extra=job_fields(message.job_id, requestId=message.request_id)
    )
    metric("ReprocessGivenUp", 1)
