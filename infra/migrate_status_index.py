"""Give jobs written before `tenant-status-index` existed their `statusSince`, once a stage.

    python -m infra.migrate_status_index --stage dev

A job gets `statusSince` from the next write that changes its status, but a job that
will not change again (COMPLETED, FAILED) would stay out of `GET /jobs?status=` until it
expires. This scans the jobs table once and sets `statusSince` to "<status>#<updatedAt>"
(a finished job's last write is the one that finished it) on every job without one. Each
write holds only while the job still has no `statusSince` and the same status, so a job
that moves meanwhile keeps what its own write set. Running it again does nothing more.
"""

from __future__ import annotations

import argparse
from typing import Any

from chalicelib import clients, jobs
from chalicelib.config import reset_settings, settings
from chalicelib.errors import StaleTransition
from infra import stack


def migrate() -> int:
    """Set `statusSince` on every job without one; how many were set."""
    scan: dict[str, Any] = {
        "TableName": settings().jobs_table,
        "FilterExpression": "attribute_not_exists(#since)",
        "ProjectionExpression": "jobId, #status, updatedAt",
        "ExpressionAttributeNames": {"#since": jobs.STATUS_SINCE, "#status": "status"},
    }
    done = 0
    while True:
        with clients.aws_errors("find jobs without statusSince"):
            page = clients.dynamodb().scan(**scan)
        done += sum(_set_status_since(item) for item in page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return done
        scan["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _set_status_since(item: dict[str, Any]) -> bool:
    status, updated = item["status"]["S"], item["updatedAt"]["S"]
    operation = f"set statusSince of job {item['jobId']['S']}"
    try:
        with clients.aws_errors(operation, {"ConditionalCheckFailedException": StaleTransition}):
            clients.dynamodb().update_item(
                TableName=settings().jobs_table,
                Key={"jobId": item["jobId"]},
                UpdateExpression="SET #since = :since",
                ConditionExpression="attribute_not_exists(#since) AND #status = :status",
                ExpressionAttributeNames={"#since": jobs.STATUS_SINCE, "#status": "status"},
                ExpressionAttributeValues={
                    ":since": {"S": jobs.status_since(status, updated)},
                    ":status": {"S": status},
                },
            )
    except StaleTransition:
        return False  # moved meanwhile: its own write set it
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.migrate_status_index", description=__doc__
    )
    parser.add_argument("--stage", help="the deployed stage whose jobs table to fill in")
    args = parser.parse_args(argv)
    stack.use_stage_output(args.stage, "JOBS_TABLE")
    reset_settings()
    print(f"statusSince set on {migrate()} job(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
