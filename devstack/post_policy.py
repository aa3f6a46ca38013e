"""S3's check of a browser-form upload (PostObject with a SigV4 POST policy), as a pure
function of the form: what the emulator runs before moto stores anything.

AWS documents the rules in "Creating a POST policy" and "Authenticating Requests in
Browser-Based Uploads Using POST (AWS Signature Version 4)"; the refusals' statuses and
codes are those of the S3 API Reference's "Error responses" list (`STATUS`):

- the policy is signed: `x-amz-signature` is the hex HMAC-SHA256 of the base64 `policy`
  field under the SigV4 signing key of `x-amz-credential`'s scope;
- `expiration` has not passed;
- every condition holds: exact match (`{"field": value}` or `["eq", "$field", value]`),
  prefix (`["starts-with", "$field", prefix]`; for Content-Type, of each comma-separated
  value), `bucket` against the bucket posted to, `content-length-range` against the size
  of the file actually sent;
- every form field is covered by a condition, except `policy`, `x-amz-signature`, `file`
  and `x-ignore-*`.

A session token (`x-amz-security-token`) must be covered like any field, but its value is
not checked: the emulator has no sessions, and a token left in a developer's shell beside
the stack's own key must not refuse every upload.

Form field names are matched without regard to case, as S3 does.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "s3"
SCOPE_TERMINATOR = "aws4_request"
# Fields S3 never asks a condition for: the signature itself, what it signs, the file.
UNCONDITIONED = frozenset({"policy", "x-amz-signature", "file"})
IGNORED_PREFIX = "x-ignore-"
# ISO 8601 in UTC, with or without milliseconds: the forms S3 reads (and boto3 writes).
EXPIRATION = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{3})?Z")
SIGNATURE_FIELDS = ("x-amz-algorithm", "x-amz-credential", "x-amz-date", "x-amz-signature")


# S3's HTTP status for each error code a form upload may be refused with.
STATUS = {
    "AccessDenied": 403,
    "AccessForbidden": 403,
    "BadRequest": 400,
    "InvalidAccessKeyId": 403,
    "SignatureDoesNotMatch": 403,
    "InvalidArgument": 400,
    "InvalidPolicyDocument": 400,
    "EntityTooLarge": 400,
    "EntityTooSmall": 400,
    "MalformedPOSTRequest": 400,
    "MaxPostPreDataLengthExceededError": 400,
    "IncorrectNumberOfFilesInPostRequest": 400,
    "PreconditionFailed": 412,
}


# Not frozen: Python sets an exception's __context__ and __notes__. eq=False: hashed and
# compared by identity, as exceptions are.
@dataclass(eq=False)
class Refusal(Exception):
    """S3's answer to a form it refuses: error code, message, extra elements; status."""

    code: str
    message: str
    details: Mapping[str, str] = field(default_factory=dict)

    @property
    def status(self) -> int:
        return STATUS[self.code]


def access_denied(message: str = "Access Denied") -> Refusal:
    return Refusal("AccessDenied", message)


def invalid_policy(message: str) -> Refusal:
    return Refusal("InvalidPolicyDocument", f"Invalid Policy: {message}")


def invalid_argument(name: str, value: str, message: str) -> Refusal:
    return Refusal("InvalidArgument", message, {"ArgumentName": name, "ArgumentValue": value})


def missing_field(name: str) -> Refusal:
    return invalid_argument(
        name,
        "",
        f"Bucket POST must contain a field named '{name}'.  "
        "If it is specified, please check the order of the fields.",
    )


@dataclass(frozen=True)
class PostForm:
    """A browser-form upload as the emulator reads it: the bucket it is posted to and the
    fields before the file part (names lower-cased)."""

    bucket: str
    fields: Mapping[str, str]


def signing_key(secret: str, date: str, region: str) -> bytes:
    """SigV4's signing key for S3 on `date` (YYYYMMDD) in `region`."""
    key = f"AWS4{secret}".encode()
    for part in (date, region, SERVICE, SCOPE_TERMINATOR):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def sign_policy(policy_base64: str, secret: str, date: str, region: str) -> str:
    key = signing_key(secret, date, region)
    return hmac.new(key, policy_base64.encode(), hashlib.sha256).hexdigest()


def check(
    form: PostForm,
    secret_for: Callable[[str], str | None],
    region: str,
    now: datetime | None = None,
) -> SizeRange | None:
    """Raise the Refusal S3 would answer `form` with, but for the file's size: return the
    policy's `content-length-range` (None if it has none), which `check_size` applies once
    the file's size is known. `secret_for(access_key_id)` is the secret of a known access
    key, None for others."""
    check_fields_present(form)
    policy_text = form.fields["policy"]
    check_signature(form.fields, policy_text, secret_for, region)
    policy = decode_policy(policy_text)
    check_expiration(policy, now or datetime.now(UTC))
    conditions = parse_conditions(policy)
    covered: set[str] = set()
    size_range: SizeRange | None = None
    for condition in conditions:
        if isinstance(condition, SizeRange):
            size_range = condition if size_range is None else size_range.within(condition)
            continue
        covered.add(condition.name)
        if not condition.holds(form):
            raise access_denied(
                f"Invalid according to Policy: Policy Condition failed: {condition.described()}"
            )
    extra = [name for name in form.fields if name not in covered and not exempt(name)]
    if extra:
        raise access_denied(f"Invalid according to Policy: Extra input fields: {extra[0]}")
    return size_range


def exempt(name: str) -> bool:
    return name in UNCONDITIONED or name.startswith(IGNORED_PREFIX)


def check_fields_present(form: PostForm) -> None:
    if "key" not in form.fields:
        raise missing_field("key")
    if "policy" not in form.fields and not any(name in form.fields for name in SIGNATURE_FIELDS):
        # An unsigned form: what a bucket that is not public-write answers anyone.
        raise access_denied()
    for name in ("policy", *SIGNATURE_FIELDS):
        if name not in form.fields:
            raise missing_field(name)


def check_signature(
    fields: Mapping[str, str],
    policy_text: str,
    secret_for: Callable[[str], str | None],
    region: str,
) -> None:
    if fields["x-amz-algorithm"] != ALGORITHM:
        message = 'X-Amz-Algorithm only supports "AWS4-HMAC-SHA256"'
        raise invalid_argument("x-amz-algorithm", fields["x-amz-algorithm"], message)
    credential = fields["x-amz-credential"]
    parts = credential.split("/")
    date = fields["x-amz-date"]
    if (
        len(parts) != 5
        or parts[3:] != [SERVICE, SCOPE_TERMINATOR]
        or parts[2] != region
        or not re.fullmatch("[0-9]{8}", parts[1])
        or date[:8] != parts[1]
        or len(date) != len("YYYYMMDDTHHMMSSZ")
    ):
        raise invalid_argument(
            "x-amz-credential",
            credential,
            f"Invalid credential scope; expecting <key>/<date>/{region}/s3/aws4_request "
            "with the date of x-amz-date",
        )
    access_key, day = parts[0], parts[1]
    secret = secret_for(access_key)
    if secret is None:
        raise Refusal(
            "InvalidAccessKeyId",
            "The AWS Access Key Id you provided does not exist in our records.",
            {"AWSAccessKeyId": access_key},
        )
    expected = sign_policy(policy_text, secret, day, region)
    if not hmac.compare_digest(expected.encode(), fields["x-amz-signature"].encode("utf-8")):
        raise Refusal(
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. "
            "Check your key and signing method.",
        )


def decode_policy(policy_text: str) -> dict[str, Any]:
    try:
        policy = json.loads(base64.b64decode(policy_text, validate=True))
    except (binascii.Error, ValueError, RecursionError) as exc:  # RecursionError: nested deep
        raise invalid_policy("Invalid JSON.") from exc
    if not isinstance(policy, dict):
        raise invalid_policy("Invalid JSON.")
    return policy


def check_expiration(policy: Mapping[str, Any], now: datetime) -> None:
    expiration = policy.get("expiration")
    if expiration is None:
        raise invalid_policy("Policy missing expiration.")
    invalid = invalid_policy(f"Invalid 'expiration' value: '{expiration}'")
    if not isinstance(expiration, str) or not EXPIRATION.fullmatch(expiration):
        raise invalid
    try:
        expires = datetime.fromisoformat(expiration[:-1]).replace(tzinfo=UTC)
    except ValueError as exc:  # a month 13, an hour 25
        raise invalid from exc
    if expires <= now:
        raise access_denied("Invalid according to Policy: Policy expired.")


@dataclass(frozen=True)
class Match:
    """`eq` or `starts-with` on one field (or `bucket`)."""

    operator: str
    name: str
    value: str

    def holds(self, form: PostForm) -> bool:
        actual = form.bucket if self.name == "bucket" else form.fields.get(self.name)
        if actual is None:
            return False
        if self.operator == "eq":
            return actual == self.value
        if self.name == "content-type":
            return all(part.strip().startswith(self.value) for part in actual.split(","))
        return actual.startswith(self.value)

    def described(self) -> str:
        return json.dumps([self.operator, f"${self.name}", self.value])


@dataclass(frozen=True)
class SizeRange:
    least: int
    most: int

    def within(self, other: SizeRange) -> SizeRange:
        """The sizes both ranges allow (none if they do not meet): S3 applies every
        `content-length-range` of a policy."""
        return SizeRange(max(self.least, other.least), min(self.most, other.most))


def parse_conditions(policy: Mapping[str, Any]) -> list[Match | SizeRange]:
    conditions = policy.get("conditions")
    if not isinstance(conditions, list):
        raise invalid_policy("Invalid 'conditions' value: must be a List.")
    return [parse_condition(condition) for condition in conditions]


def parse_condition(condition: Any) -> Match | SizeRange:
    if isinstance(condition, dict):
        if len(condition) != 1:
            raise invalid_policy(
                "Invalid Simple-Condition: Simple-Conditions must have exactly one property "
                "specified."
            )
        ((name, value),) = condition.items()
        if not isinstance(value, str):
            raise invalid_policy(f"Invalid Simple-Condition: value of {name} must be a string.")
        return Match("eq", str(name).lower(), value)
    if isinstance(condition, list) and condition:
        operator = str(condition[0]).lower()
        if operator == "content-length-range":
            return parse_size_range(condition)
        if operator in ("eq", "starts-with") and len(condition) == 3:
            name, value = condition[1], condition[2]
            if isinstance(name, str) and name.startswith("$") and isinstance(value, str):
                return Match(operator, name[1:].lower(), value)
    raise invalid_policy(f"Invalid Condition: {json.dumps(condition)}")


def parse_size_range(condition: list[Any]) -> SizeRange:
    bounds = condition[1:]
    if len(bounds) != 2 or not all(
        isinstance(bound, int) and not isinstance(bound, bool) and bound >= 0 for bound in bounds
    ):
        raise invalid_policy("Invalid content-length-range: two whole numbers of bytes.")
    least, most = bounds
    if most < least:
        raise invalid_policy("Invalid content-length-range: the maximum is below the minimum.")
    return SizeRange(least, most)


def check_size(size: int, size_range: SizeRange | None) -> None:
    if size_range is None:
        return
    least, most = size_range.least, size_range.most
    if size > most:
        raise Refusal(
            "EntityTooLarge",
            "Your proposed upload exceeds the maximum allowed size",
            {"ProposedSize": str(size), "MaxSizeAllowed": str(most)},
        )
    if size < least:
        raise Refusal(
            "EntityTooSmall",
            "Your proposed upload is smaller than the minimum allowed size",
            {"ProposedSize": str(size), "MinSizeAllowed": str(least)},
        )
