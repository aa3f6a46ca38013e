"""The backfill function, fed by page messages (chalicelib/backfill_message.py).

Each message is one page of the backfill's jobs (BACKFILL_PAGE_SIZE of them, newest
first, read from the tenant index: never a scan). A page is acted on in three steps:

1. its plan is stored on the backfill record (chalicelib/backfills.py): which jobs lack
   an output at its current preset version and still have their original, and what the
   others were (already current, original expired, not completed). A page read again
   after a fault finds its plan stored and acts on the very same jobs;
2. the jobs to reprocess go to the reprocess queue, ten a request (none in a dry run);
3. the record moves past the page, adding its counts, and the next page's message is
   sent (after the last page: the backfill completes if every job sent has ended). A
   message whose page the record has moved past is a duplicate and is dropped, unless it
   is this message again after its invocation failed between 3's write and what follows
   it: then it does that again.

So a page's jobs are sent at least once and counted once; a job sent twice is reprocessed
once, since the second finds its outputs current, and its outcome is counted once
(chalicelib/backfill_outcomes.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from chalicelib import backfill_message, backfills, jobs, reprocess, reprocess_message, sqs_batch
from chalicelib.backfill_message import PageMessage
from chalicelib.backfills import Backfill, BackfillState, PagePlan
from chalicelib.config import settings
from chalicelib.jobs import JobStatus
from chalicelib.observability import logger
from chalicelib.reprocess_message import ReprocessMessage


def handle_backfill_pages(records: Iterable[Mapping[str, object]]) -> None:
    sqs_batch.run_batch(records, _process_record)


def _process_record(record: sqs_batch.SqsRecord) -> None:
    message = backfill_message.parse(record.body)
    if message is None:
        logger.error("dropping malformed backfill message", extra={"messageId": record.message_id})
        return
    walk_page(message, redelivered=record.receive_count > 1)


def walk_page(message: PageMessage, *, redelivered: bool = False) -> None:
    """Act on the page `message` names, if it is the backfill's next one."""
    backfill = backfills.get(message.backfill_id)
    if backfill is None or backfill.tenant != message.tenant:
        logger.warning("backfill page for no such backfill", extra=_fields(message))
        return
    if backfill.state is not BackfillState.RUNNING:
        return
    if backfill.page != message.page:
        if redelivered and backfill.page == message.page + 1:
            # This page was counted; what follows it may not have been done.
            _move_on(backfill, message, last=backfill.pages_done)
        return
    plan = _plan(backfill)
    if plan is None:
        return
    if not backfill.dry_run:
        reprocess_message.send_many(_reprocess_messages(backfill, plan))
    if not backfills.advance(backfill, plan):
        return
    logger.info(
        "backfill page read",
        extra={**_fields(message), "jobs": sum(plan.counts.values()), "sent": len(plan.jobs)},
    )
    _move_on(backfill, message, last=plan.next_key is None)


def _move_on(backfill: Backfill, message: PageMessage, *, last: bool) -> None:
    """After the page `message` names is counted: the next page's message, or after the
    last page, the backfill completed if every job sent has ended (else the count of the
    last of them completes it)."""
    if last:
        backfills.complete_if_settled(backfill.backfill_id)
    else:
        backfill_message.send(message.next())


def _plan(backfill: Backfill) -> PagePlan | None:
    """The plan of the backfill's next page: the stored one, or a new one made and stored.
    None if another delivery of the message moved past the page meanwhile."""
    if backfill.plan is not None and backfill.plan.page == backfill.page:
        return backfill.plan
    plan = read_page(backfill)
    if backfills.save_plan(backfill, plan):
        return plan
    stored = backfills.get(backfill.backfill_id)
    if stored is not None and stored.plan is not None and stored.plan.page == backfill.page:
        return stored.plan
    return None


def read_page(backfill: Backfill) -> PagePlan:
    """Read the backfill's next page of jobs and sort them out."""
    found, next_key = jobs.created_between(
        backfill.tenant,
        backfill.created_after,
        backfill.created_before,
        limit=settings().backfill_page_size,
        start_key=backfill.cursor,
    )
    counts = dict.fromkeys(backfills.PAGE_COUNTS, 0)
    to_reprocess: list[tuple[str, tuple[str, ...]]] = []
    for job in found:
        counts["matched"] += 1
        verdict, presets = _sort_out(job, backfill.presets)
        counts[verdict] += 1
        if presets:
            to_reprocess.append((job.job_id, presets))
    return PagePlan(backfill.page, next_key, tuple(to_reprocess), counts)


def _sort_out(job: jobs.Job, presets: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    if job.status is not JobStatus.COMPLETED:
        return "notCompleted", ()
    stale = reprocess.presets_to_redo(job, presets)
    if not stale:
        return "alreadyCurrent", ()
    if not reprocess.original_available(job):
        return "originalExpired", ()
    return "toReprocess", tuple(stale)


def _reprocess_messages(backfill: Backfill, plan: PagePlan) -> list[ReprocessMessage]:
    return [
        ReprocessMessage(
            job_id=job_id,
            tenant=backfill.tenant,
            presets=presets,
            request_id=request_id(backfill.backfill_id),
            backfill_id=backfill.backfill_id,
        )
        for job_id, presets in plan.jobs
    ]


def request_id(backfill_id: str) -> str:
    """The reprocess request of every job a backfill sends: the same for each sending."""
    return "rpr_" + backfill_id.removeprefix(backfills.BACKFILL_ID_PREFIX)


def _fields(message: PageMessage) -> dict[str, object]:
    return {"tenant": message.tenant, "backfillId": message.backfill_id, "page": message.page}
