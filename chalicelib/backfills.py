"""The backfill store: one record per backfill, and one marker per job it counted.

In the backfills table, under the backfill's id:

- the record ("backfill"): the tenant, the presets and the range of creation times it
  covers, its state, the next page to read and the cursor where it starts, the plan of a
  page being acted on, and its counts;
- a marker per job whose reprocessing outcome was counted ("job#<id>"), written in the
  same transaction as the count, so an outcome is counted once however often its message
  comes.

A page is acted on in two steps, each one conditional write on the record (see
chalicelib/backfill_pages.py): the page's plan (the jobs to reprocess, and what the others
were) is stored before any message is sent, so a page read again after a fault acts on
the same jobs; the page's counts are added as the cursor moves past it.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from chalicelib import clients
from chalicelib.config import settings
from chalicelib.errors import BackfillFinished, NotFound
from chalicelib.timestamps import now_iso

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import (
        AttributeValueTypeDef,
        TransactWriteItemTypeDef,
        UpdateItemInputTypeDef,
    )

BACKFILL_ID_PREFIX = "bf_"
RECORD = "backfill"


class BackfillState(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"


# Counted as a page is read: every job of the range, and what became of it there.
PAGE_COUNTS = ("matched", "toReprocess", "alreadyCurrent", "originalExpired", "notCompleted")
# Counted as the reprocessing of each job sent ends (record_outcome).
OUTCOME_COUNTS = ("done", "failed", "lateCurrent", "lateExpired", "skipped", "cancelled")


@dataclass(frozen=True)
class PagePlan:
    """What one page of jobs holds: the jobs to reprocess (each with the presets it lacks)
    and the counts of the page; `next_key` is where the next page starts (None: the last)."""

    page: int
    next_key: dict[str, str] | None
    jobs: tuple[tuple[str, tuple[str, ...]], ...] = ()
    counts: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Backfill:
    backfill_id: str
    tenant: str
    presets: tuple[str, ...]
    created_after: str
    created_before: str
    dry_run: bool
    state: BackfillState
    created_at: str
    updated_at: str
    page: int = 0
    cursor: dict[str, str] | None = None
    pages_done: bool = False
    plan: PagePlan | None = None
    counts: Mapping[str, int] = field(default_factory=dict)
    completed_at: str | None = None
    error: dict[str, str] | None = None

    def count(self, name: str) -> int:
        return self.counts.get(name, 0)

    @property
    def settled(self) -> int:
        """How many of the jobs sent have had their outcome counted."""
        return self.count("settled")


def new_backfill_id() -> str:
    return BACKFILL_ID_PREFIX + secrets.token_hex(12)


def create(
    tenant: str,
    *,
    presets: Sequence[str],
    created_after: str,
    created_before: str,
    dry_run: bool,
) -> Backfill:
    now = now_iso()
    backfill = Backfill(
        backfill_id=new_backfill_id(),
        tenant=tenant,
        presets=tuple(presets),
        created_after=created_after,
        created_before=created_before,
        dry_run=dry_run,
        state=BackfillState.RUNNING,
        created_at=now,
        updated_at=now,
    )
    item = {
        "pk": backfill.backfill_id,
        "sk": RECORD,
        "tenant": tenant,
        "presets": list(backfill.presets),
        "createdAfter": created_after,
        "createdBefore": created_before,
        "dryRun": dry_run,
        "state": backfill.state.value,
        "createdAt": now,
        "updatedAt": now,
        "page": 0,
        "pagesDone": False,
        "expiresAt": _expires_at(),
        **{name: 0 for name in (*PAGE_COUNTS, *OUTCOME_COUNTS, "settled")},
    }
    with clients.aws_errors("create backfill"):
        clients.dynamodb().put_item(
            TableName=settings().backfills_table,
            Item=_serialize(item),
            ConditionExpression="attribute_not_exists(pk)",
        )
    return backfill


def get(backfill_id: str) -> Backfill | None:
    with clients.aws_errors(f"read backfill {backfill_id}"):
        response = clients.dynamodb().get_item(
            TableName=settings().backfills_table, Key=_key(backfill_id), ConsistentRead=True
        )
    item = response.get("Item")
    return _from_item(_deserialize(item)) if item else None


def get_tenant_backfill(tenant: str, backfill_id: str) -> Backfill:
    """The caller's backfill, or NotFound: another tenant's is indistinguishable from none."""
    found = get(backfill_id) if _is_backfill_id(backfill_id) else None
    if found is None or found.tenant != tenant:
        raise NotFound("No such backfill.")
    return found


def cancel(tenant: str, backfill_id: str) -> Backfill:
    """Cancel the caller's running backfill: no page is read after this, and a job sent
    but not yet reprocessed is left as it is. Cancelling a cancelled one changes nothing;
    a finished one answers BackfillFinished."""
    current = get_tenant_backfill(tenant, backfill_id)
    cancelled = _update(
        f"cancel backfill {backfill_id}",
        backfill_id,
        "SET #state = :cancelled, updatedAt = :now",
        "#state = :running",
        {":cancelled": BackfillState.CANCELLED.value, ":now": now_iso()},
    )
    if cancelled:
        return get_tenant_backfill(tenant, backfill_id)
    current = get_tenant_backfill(tenant, backfill_id)
    if current.state is not BackfillState.CANCELLED:
        raise BackfillFinished(f"The backfill has already {current.state.value}.")
    return current


def save_plan(backfill: Backfill, plan: PagePlan) -> bool:
    """Store `plan` as the plan of the backfill's next page, unless that page has one
    already (or the backfill moved on): False then, and the stored plan is the one."""
    return _update(
        f"plan page {plan.page} of backfill {backfill.backfill_id}",
        backfill.backfill_id,
        "SET #plan = :plan, updatedAt = :now",
        "#page = :page AND (attribute_not_exists(#plan) OR #plan.#page <> :page)",
        {":plan": _plan_item(plan), ":page": plan.page, ":now": now_iso()},
    )


def advance(backfill: Backfill, plan: PagePlan) -> bool:
    """Move past the planned page, adding its counts: False if it was moved past already.
    Not conditional on the state: a page whose jobs were sent is counted even if the
    backfill was cancelled meanwhile."""
    counts = dict(plan.counts)
    if backfill.dry_run:  # nothing was sent: what would have been is shown apart
        counts["wouldReprocess"] = counts.pop("toReprocess", 0)
    expression = "SET #page = :next, pagesDone = :done, updatedAt = :now REMOVE #plan"
    values: dict[str, object] = {
        ":next": plan.page + 1,
        ":done": plan.next_key is None,
        ":now": now_iso(),
        ":page": plan.page,
    }
    if plan.next_key is None:
        expression = expression.replace(" REMOVE #plan", " REMOVE #plan, #cursor")
    else:
        expression = expression.replace("SET ", "SET #cursor = :cursor, ")
        values[":cursor"] = plan.next_key
    additions = ", ".join(f"{name} :{name}" for name in counts)
    if additions:
        expression += f" ADD {additions}"
        values.update({f":{name}": value for name, value in counts.items()})
    return _update(
        f"finish page {plan.page} of backfill {backfill.backfill_id}",
        backfill.backfill_id,
        expression,
        "#page = :page",
        values,
    )


def complete_if_settled(backfill_id: str) -> bool:
    """Mark the backfill completed if every page is read and every job sent is counted."""
    return _update(
        f"complete backfill {backfill_id}",
        backfill_id,
        "SET #state = :completed, completedAt = :now, updatedAt = :now",
        "#state = :running AND pagesDone = :true AND settled = toReprocess",
        {":completed": BackfillState.COMPLETED.value, ":now": now_iso(), ":true": True},
    )


def fail(backfill_id: str, *, code: str, message: str) -> bool:
    """End a running backfill failed (its pages cannot be read); False if it had ended."""
    return _update(
        f"fail backfill {backfill_id}",
        backfill_id,
        "SET #state = :failed, #error = :error, updatedAt = :now",
        "#state = :running",
        {
            ":failed": BackfillState.FAILED.value,
            ":error": {"code": code, "message": message},
            ":now": now_iso(),
        },
    )


def record_outcome(backfill_id: str, job_id: str, counter: str) -> bool:
    """Count one job's outcome under `counter` (one of OUTCOME_COUNTS), once: False if that
    job's outcome was counted already."""
    if counter not in OUTCOME_COUNTS:
        raise ValueError(f"not an outcome count: {counter}")
    table = settings().backfills_table
    marker: dict[str, object] = {"pk": backfill_id, "sk": f"job#{job_id}", "counter": counter}
    marker["expiresAt"] = _expires_at()
    items: list[TransactWriteItemTypeDef] = [
        {
            "Put": {
                "TableName": table,
                "Item": _serialize(marker),
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        },
        {
            "Update": {
                "TableName": table,
                "Key": _key(backfill_id),
                "UpdateExpression": f"ADD {counter} :one, settled :one SET updatedAt = :now",
                "ConditionExpression": "attribute_exists(pk)",
                "ExpressionAttributeValues": _serialize({":one": 1, ":now": now_iso()}),
            }
        },
    ]
    return clients.transact_if(f"count job {job_id} in backfill {backfill_id}", items)


def view(backfill: Backfill) -> dict[str, object]:
    """The backfill as the API shows it."""
    counts = {
        "matched": backfill.count("matched"),
        "toReprocess": backfill.count("wouldReprocess" if backfill.dry_run else "toReprocess"),
        "done": backfill.count("done"),
        "failed": backfill.count("failed"),
        "alreadyCurrent": backfill.count("alreadyCurrent") + backfill.count("lateCurrent"),
        "originalExpired": backfill.count("originalExpired") + backfill.count("lateExpired"),
        "notCompleted": backfill.count("notCompleted") + backfill.count("skipped"),
        "cancelled": backfill.count("cancelled"),
    }
    # A job sent may end before its page's counts are added (they are added once the whole
    # page is sent): until then it is not pending, it is counted already.
    unsettled = backfill.count("toReprocess") - backfill.settled
    counts["pending"] = 0 if backfill.dry_run else max(unsettled, 0)
    shown: dict[str, object] = {
        "backfillId": backfill.backfill_id,
        "status": backfill.state.value,
        "presets": list(backfill.presets),
        "createdAfter": backfill.created_after,
        "createdBefore": backfill.created_before,
        "dryRun": backfill.dry_run,
        "pagesRead": backfill.page,
        "allPagesRead": backfill.pages_done,
        "counts": counts,
        "createdAt": backfill.created_at,
        "updatedAt": backfill.updated_at,
    }
    if backfill.completed_at is not None:
        shown["completedAt"] = backfill.completed_at
    if backfill.error is not None:
        shown["error"] = backfill.error
    return shown


# --- the record ---------------------------------------------------------------------------


def _update(
    operation: str, backfill_id: str, expression: str, condition: str, values: dict[str, object]
) -> bool:
    names = {"#state": "state", "#page": "page", "#plan": "plan", "#cursor": "cursor"}
    names["#error"] = "error"
    if ":running" in condition:
        values[":running"] = BackfillState.RUNNING.value
    request: UpdateItemInputTypeDef = {
        "TableName": settings().backfills_table,
        "Key": _key(backfill_id),
        "UpdateExpression": expression,
        "ConditionExpression": f"attribute_exists(pk) AND ({condition})",
        "ExpressionAttributeNames": {
            name: value for name, value in names.items() if name in expression + condition
        },
        "ExpressionAttributeValues": _serialize(values),
    }
    if not values:
        del request["ExpressionAttributeValues"]
    return clients.update_if(operation, request)


def _plan_item(plan: PagePlan) -> dict[str, object]:
    return {
        "page": plan.page,
        "nextKey": plan.next_key,
        "jobs": [{"jobId": job_id, "presets": list(presets)} for job_id, presets in plan.jobs],
        "counts": dict(plan.counts),
    }


def _plan_from(item: Mapping[str, Any]) -> PagePlan:
    next_key = item.get("nextKey")
    return PagePlan(
        page=int(item["page"]),
        next_key={str(k): str(v) for k, v in next_key.items()} if next_key else None,
        jobs=tuple(
            (str(job["jobId"]), tuple(str(name) for name in job["presets"]))
            for job in item.get("jobs", [])
        ),
        counts={str(name): int(value) for name, value in item.get("counts", {}).items()},
    )


def _from_item(item: Mapping[str, Any]) -> Backfill:
    cursor = item.get("cursor")
    plan = item.get("plan")
    error = item.get("error")
    counted = (*PAGE_COUNTS, *OUTCOME_COUNTS, "settled", "wouldReprocess")
    return Backfill(
        backfill_id=str(item["pk"]),
        tenant=str(item["tenant"]),
        presets=tuple(str(name) for name in item.get("presets", [])),
        created_after=str(item["createdAfter"]),
        created_before=str(item["createdBefore"]),
        dry_run=bool(item.get("dryRun", False)),
        state=BackfillState(str(item["state"])),
        created_at=str(item["createdAt"]),
        updated_at=str(item["updatedAt"]),
        page=int(item.get("page", 0)),
        cursor={str(k): str(v) for k, v in cursor.items()} if cursor else None,
        pages_done=bool(item.get("pagesDone", False)),
        plan=_plan_from(plan) if plan else None,
        counts={name: int(item[name]) for name in counted if name in item},
        completed_at=str(item["completedAt"]) if "completedAt" in item else None,
        error={str(k): str(v) for k, v in error.items()} if error else None,
    )


def _key(backfill_id: str) -> dict[str, AttributeValueTypeDef]:
    return {"pk": {"S": backfill_id}, "sk": {"S": RECORD}}


def _is_backfill_id(value: str) -> bool:
    token = value.removeprefix(BACKFILL_ID_PREFIX)
    return value.startswith(BACKFILL_ID_PREFIX) and len(token) == 24 and token.isalnum()


def _expires_at() -> int:
    return int(time.time()) + settings().job_ttl_days * 86400


def _serialize(values: Mapping[str, object]) -> dict[str, AttributeValueTypeDef]:
    from boto3.dynamodb.types import TypeSerializer

    serializer = TypeSerializer()
    return {key: serializer.serialize(value) for key, value in values.items()}


def _deserialize(item: Mapping[str, AttributeValueTypeDef]) -> dict[str, Any]:
    from boto3.dynamodb.types import TypeDeserializer

    deserializer = TypeDeserializer()
    return {key: deserializer.deserialize(value) for key, value in item.items()}
