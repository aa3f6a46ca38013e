"""What a FAILED job's `error` may say: its code's fixed text, at most with a safe detail."""

from __future__ import annotations

import re
from typing import Any

from chalicelib.errors import JOB_FAILURE_MESSAGES

# Written out here, not taken from chalicelib: "name: value" items, each value a number, a
# media type or a format name, with an optional unit; never a library's words.
_ITEM = r"[a-z]+(?: [a-z]+)*: [A-Za-z0-9][A-Za-z0-9/.+_-]*(?: [a-z]+)?"
DETAIL = re.compile(rf" \({_ITEM}(?:; {_ITEM})*\)")


def assert_fixed_message(error: Any, code: str | None = None) -> str:
    """Assert `error` (a job's `error`) is its code's fixed text, plus a safe detail at
    most; returns the detail ("" without one)."""
    assert isinstance(error, dict), error
    assert set(error) == {"code", "message"}, error
    if code is not None:
        assert error["code"] == code, error
    text = JOB_FAILURE_MESSAGES[error["code"]]
    message = error["message"]
    assert message.startswith(text), error
    detail = message[len(text) :]
    assert detail == "" or DETAIL.fullmatch(detail), error
    return str(detail)
