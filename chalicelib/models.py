"""The API's request and response models, each defined once as a JSON Schema.

`chalicelib.api` validates requests by interpreting these schemas (`validate`,
`parse_query`) and `chalicelib.openapi` publishes the very same dictionaries, so what is
checked and what is documented cannot drift apart. The interpreter knows only the
keywords listed in `_ASSERTIONS` and refuses a schema with any other, so a schema can
never promise a rule that no code enforces.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from chalicelib.errors import (
    JOB_FAILURE_MESSAGES,
    PROCESSING_FAILED,
    SAFE_DETAIL,
    ApiError,
    InvalidRequest,
    MediaPipelineError,
    SourceError,
    UnknownPreset,
    UnsupportedContentType,
)
from chalicelib.formats import ACCEPTED_CONTENT_TYPES, OUTPUT_FORMATS
from chalicelib.jobs import JobStatus
from chalicelib.outbound import MAX_URL_LENGTH
from chalicelib.presets import (
    CORNERS,
    FITS,
    MAX_DIMENSION,
    MAX_SET_WIDTHS,
    MAX_WATERMARK_TEXT,
    NAME_PATTERN,
)
from chalicelib.webhooks import ENDPOINT_ID_PREFIX, JOB_EVENTS, WEBHOOK_TEST

Schema = dict[str, Any]

# --- limits ------------------------------------------------------------------------------

MAX_BODY_BYTES = 16 * 1024
MAX_FILENAME_CHARS = 255
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
MAX_CURSOR_CHARS = 512

# --- formats -------------------------------------------------------------------------------
# JSON Schema patterns are ECMA-262 regular expressions, searched for: anchored here, and
# read by `_search` as ECMA reads them.

JOB_ID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"

# Display names are shown to people, so none of Unicode's (15.1, Python 3.13's) control
# characters (Cc), invisible format characters (Cf: bidi controls and overrides, zero-width
# spaces and joiners, the BOM, tags, ...) or line and paragraph separators (Zl, Zp): each
# can make a name look like another or reorder what is around it. (Unpaired surrogates are
# refused with the JSON itself, for every string: see chalicelib.api.) tests/test_api.py
# checks the list against unicodedata.
FILENAME_REFUSED_RANGES: tuple[tuple[int, int], ...] = (
    (0x0000, 0x001F),
    (0x007F, 0x009F),
    (0x00AD, 0x00AD),
    (0x0600, 0x0605),
    (0x061C, 0x061C),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x180E, 0x180E),
    (0x200B, 0x200F),
    (0x2028, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x206F),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
)


def _class_char(code_point: int) -> str:
    # Outside the BMP, the character itself: ECMA-262 (read with the u flag, as JSON Schema
    # 2020-12 asks) and Python read it as one code point, and have no escape in common.
    return f"\\u{code_point:04x}" if code_point <= 0xFFFF else chr(code_point)


FILENAME_PATTERN = (
    "^[^"
    + "".join(
        _class_char(first) + ("" if first == last else "-" + _class_char(last))
        for first, last in FILENAME_REFUSED_RANGES
    )
    + "]*$"
)
CURSOR_PATTERN = r"^[A-Za-z0-9_-]*$"
_ASCII_INTEGER = re.compile(r"[0-9]{1,9}")

CONTENT_TYPES = sorted(ACCEPTED_CONTENT_TYPES)


def _subclasses(base: type[MediaPipelineError]) -> list[type[MediaPipelineError]]:
    found: list[type[MediaPipelineError]] = []
    pending = list(base.__subclasses__())
    while pending:
        error = pending.pop(0)
        found.append(error)
        pending.extend(error.__subclasses__())
    return found


def api_error_types() -> list[type[ApiError]]:
    """Every ApiError subclass: the complete list of codes the API (and its gateway) answers."""
    found = [error for error in _subclasses(ApiError) if issubclass(error, ApiError)]
    return sorted(found, key=lambda error: (error.status, error.code))


# The codes a FAILED job carries.
JOB_FAILURE_CODES = sorted({error.code for error in _subclasses(SourceError)} | {PROCESSING_FAILED})


# --- request models ----------------------------------------------------------------------


OUTPUT_SPEC: Schema = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "width", "height", "fit", "format"],
    "properties": {
        "name": {
            "type": "string",
            "pattern": f"^{NAME_PATTERN.pattern}$",
            "description": (
                "1 to 32 characters of a-z, 0-9, _ and -, starting with a letter or digit."
            ),
        },
        "width": {"type": "integer", "minimum": 1, "maximum": MAX_DIMENSION},
        "height": {"type": "integer", "minimum": 1, "maximum": MAX_DIMENSION},
        "fit": {"type": "string", "enum": list(FITS)},
        "format": {"type": "string", "enum": list(OUTPUT_FORMATS)},
        "quality": {"type": "integer", "minimum": 1, "maximum": 100},
        "widths": {
            "type": "array",
            "minItems": 1,
            "uniqueItems": True,
            "items": {"type": "integer", "minimum": 1, "maximum": MAX_DIMENSION},
            "description": (
                f"A responsive set: the box scaled to each width (at most {MAX_SET_WIDTHS})."
            ),
        },
        "formats": {
            "type": "array",
            "minItems": 1,
            "uniqueItems": True,
            "items": {"type": "string", "enum": list(OUTPUT_FORMATS)},
            "description": "A responsive set: each width in each of these formats.",
        },
    },
    "description": (
        "An output as a preset describes one, named unlike the job's presets; stored as "
        "`<name>.<ext>`, or `<name>-<width>w.<ext>` with `widths`. Within the stage's "
        "limits: MAX_JOB_OUTPUTS outputs (each width counts), MAX_OUTPUT_DIMENSION pixels "
        "a side, the formats of UPLOAD_OUTPUT_FORMATS, MAX_JOB_OUTPUT_PIXELS pixels over all "
        "of them (each width's whole box); past one, 400 invalid_request naming the field "
        "and the limit."
    ),
}


def preset_names_schema(preset_names: Sequence[str], description: str) -> Schema:
    """A list of configured preset names, each at most once."""
    return {
        "type": "array",
        "minItems": 1,
        "uniqueItems": True,
        "items": {"type": "string", "enum": list(preset_names)},
        "description": description,
    }


def upload_request(preset_names: Sequence[str]) -> Schema:
    """POST /uploads. `preset_names` are the stage's configured presets."""
    example: dict[str, Any] = {"contentType": "image/jpeg", "filename": "beach.jpg"}
    if preset_names:
        example["presets"] = list(preset_names[:1])
    return {
        "type": "object",
        "examples": [example],
        "additionalProperties": False,
        "required": ["contentType"],
        "properties": {
            "contentType": {
                "type": "string",
                "enum": CONTENT_TYPES,
                "description": "The image's media type, exactly as listed (lower case).",
            },
            "filename": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_FILENAME_CHARS,
                "pattern": FILENAME_PATTERN,
                "description": (
                    f"Display name, 1 to {MAX_FILENAME_CHARS} characters, none of them a "
                    "control character, an invisible format character (bidi controls, "
                    "zero-width characters, ...: Unicode categories Cc and Cf) or a line "
                    "or paragraph separator (Zl, Zp); sanitized before it becomes part of "
                    "a storage key."
                ),
            },
            "presets": preset_names_schema(
                preset_names,
                "Presets to render, each at most once; default: all of them, or none when "
                "`outputs` is given.",
            ),
            "outputs": {
                "type": "array",
                "minItems": 1,
                "items": OUTPUT_SPEC,
                "description": "The upload's own outputs, rendered in the same job.",
            },
        },
    }


def reprocess_request(preset_names: Sequence[str]) -> Schema:
    """POST /jobs/{job_id}/reprocess. `preset_names` are the stage's configured presets."""
    return {
        "type": "object",
        "examples": [{"presets": list(preset_names[:1])}],
        "additionalProperties": False,
        "required": ["presets"],
        "properties": {
            "presets": {
                "type": "array",
                "minItems": 1,
                "uniqueItems": True,
                "items": {"type": "string", "enum": list(preset_names)},
                "description": (
                    "Configured presets to make again from the job's original, at their "
                    "current versions (new ones are added to the job); a preset whose "
                    "outputs are already current is left alone."
                ),
            },
        },
    }


# Which error a value outside a field's enum raises (any other violation: InvalidRequest).
ENUM_ERRORS: Mapping[str, type[ApiError]] = {
    "contentType": UnsupportedContentType,
    "presets": UnknownPreset,
}

JOB_ID: Schema = {
    "type": "string",
    "pattern": JOB_ID_PATTERN,
    "description": "A job id as POST /uploads returned it (a lower-case UUID).",
}

# The query parameters of every route but GET /jobs: none.
NO_QUERY: Mapping[str, Schema] = {}

LIST_JOBS_QUERY: dict[str, Schema] = {
    "status": {
        "type": "string",
        "enum": [status.value for status in JobStatus],
        "description": "Only jobs in this status.",
    },
    "limit": {
        "type": "integer",
        "minimum": 1,
        "maximum": MAX_PAGE_SIZE,
        "default": DEFAULT_PAGE_SIZE,
        "description": "Page size.",
    },
    "cursor": {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_CURSOR_CHARS,
        "pattern": CURSOR_PATTERN,
        "description": "The previous page's nextCursor; valid only for the tenant it was given to.",
    },
}

MAX_WAIT_SECONDS = 20

GET_JOB_QUERY: dict[str, Schema] = {
    "wait": {
        "type": "integer",
        "minimum": 1,
        "maximum": MAX_WAIT_SECONDS,
        "description": (
            "Long-poll: answer as soon as the job is COMPLETED or FAILED, or after this "
            "many seconds with its current state (within a second of its end either way)."
        ),
    },
}

# --- response models ---------------------------------------------------------------------


def _nullable(schema: Schema) -> Schema:
    return {**schema, "type": [schema["type"], "null"]}


def _object(properties: dict[str, Schema], **extra: Any) -> Schema:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": list(properties),
        "properties": properties,
        **extra,
    }


STRING: Schema = {"type": "string"}
COUNT: Schema = {"type": "integer", "minimum": 0}
TIMESTAMP: Schema = {"type": "string", "format": "date-time"}


def error_body(codes: Sequence[str]) -> Schema:
    """Every error the API answers: {"error": {"code", "message"}}, `code` one of `codes`."""
    return _object(
        {"error": _object({"code": {"type": "string", "enum": list(codes)}, "message": STRING})}
    )


def error_codes(status: int | None = None) -> list[str]:
    """The codes answered with `status` (every code when None)."""
    return [e.code for e in api_error_types() if status is None or e.status == status]


ERROR = error_body(error_codes())

# Chalice's local server answers a request without an Authorization header itself, as API
# Gateway does by default; `make deploy` replaces that answer with ERROR's shape on AWS.
LOCAL_GATEWAY_MESSAGE = _object({"message": {"type": ["string", "null"]}})

HEALTH = _object({"status": {"type": "string", "enum": ["ok"]}})

UPLOAD_CREATED = _object(
    {
        "jobId": JOB_ID,
        "status": {"type": "string", "enum": [JobStatus.PENDING.value]},
        "upload": _object(
            {
                "url": STRING,
                "method": {"type": "string", "enum": ["POST"]},
                "fields": {"type": "object", "additionalProperties": STRING},
                "maxBytes": COUNT,
                "expiresAt": TIMESTAMP,
            },
            description=(
                "A presigned multipart/form-data POST: every field, then the file as `file`."
            ),
        ),
    }
)


def _ecma_literal(text: str) -> str:
    """`text` as an ECMA-262 pattern matching it literally (escaping only what the u flag
    allows to be escaped outside a class, its syntax characters)."""
    return re.sub(r"([\^$\\.*+?()\[\]{}|/])", r"\\\1", text)


def _job_error(code: str) -> Schema:
    text = _ecma_literal(JOB_FAILURE_MESSAGES[code])
    message = {"type": "string", "pattern": rf"^{text}(?: \({SAFE_DETAIL.pattern}\))?$"}
    return _object({"code": {"type": "string", "enum": [code]}, "message": message})


PLACEHOLDER = _object(
    {
        "blurhash": {
            "type": "string",
            "description": "A BlurHash (blurha.sh), 4 components along the longer side.",
        },
        "thumbhash": {
            "type": "string",
            "description": "A ThumbHash (evanw.github.io/thumbhash), base64; keeps transparency.",
        },
        "dominantColor": {
            "type": "string",
            "pattern": "^#[0-9a-f]{6}$",
            "description": "The colour covering most of the picture, for a plain background.",
        },
        "width": COUNT,
        "height": COUNT,
    },
    description=(
        "What to show while an output loads, from the worker's own pixels. Width and height "
        "are the upright picture's, for the placeholder's aspect ratio."
    ),
)

RESPONSIVE_SET = _object(
    {
        "preset": STRING,
        "sizes": {
            "type": "string",
            "description": "The sizes attribute used: full width up to the largest output.",
        },
        "srcset": {
            "type": "object",
            "additionalProperties": STRING,
            "description": "Per format (JPEG, WEBP, AVIF, PNG): `<url> <width>w, ...`.",
        },
        "picture": {
            "type": "string",
            "description": (
                "<picture> with a <source type srcset sizes> per format but the fallback "
                "(JPEG, else PNG, WEBP, AVIF), then <img src srcset sizes width height alt "
                'loading="lazy" decoding="async">; alt is empty, for the page to fill.'
            ),
        },
    }
)

JOB = _object(
    {
        "jobId": JOB_ID,
        "status": {"type": "string", "enum": [status.value for status in JobStatus]},
        "createdAt": TIMESTAMP,
        "updatedAt": TIMESTAMP,
        "filename": _nullable(STRING),
        "presets": {"type": "array", "items": STRING},
        "source": _object(
            {
                "contentType": STRING,
                "bytes": _nullable(COUNT),
                "width": _nullable(COUNT),
                "height": _nullable(COUNT),
                "format": _nullable(STRING),
            },
            description="What is known of the upload; null until the worker has read it.",
        ),
        "outputs": {
            "type": "array",
            "description": (
                "Once COMPLETED: one per preset, or for a responsive set one per width and "
                "format, each with a presigned GET URL."
            ),
            "items": _object(
                {
                    "preset": STRING,
                    "name": {
                        "type": "string",
                        "description": (
                            "The output's name in its key: the preset's, or "
                            "`<preset>-<width>w` for one of a responsive set."
                        ),
                    },
                    "responsive": {
                        "type": "boolean",
                        "description": "One of a preset's responsive set.",
                    },
                    "version": {
                        "type": ["string", "null"],
                        "description": (
                            "The version of the preset definition that made it (10 hex "
                            "digits of its canonical JSON's SHA-256), also in its key; a "
                            "changed preset has a new version (POST "
                            "/jobs/{jobId}/reprocess makes its outputs again)."
                        ),
                    },
                    "width": COUNT,
                    "height": COUNT,
                    "format": STRING,
                    "contentType": STRING,
                    "bytes": COUNT,
                    "url": STRING,
                }
            ),
        },
        "responsive": {
            "type": "array",
            "description": (
                "Once COMPLETED, per preset with a responsive set: ready srcsets and a "
                "<picture> snippet naming only the outputs made. Empty in webhook events "
                "(their URLs would expire): fetch the job."
            ),
            "items": {"$ref": "#/components/schemas/ResponsiveSet"},
        },
        "placeholder": {
            "oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/Placeholder"}],
            "description": "Once COMPLETED; null otherwise.",
        },
        "error": {
            "oneOf": [{"type": "null"}, *(_job_error(code) for code in JOB_FAILURE_CODES)],
            "description": (
                "Why the job FAILED; null otherwise. The message is the code's fixed text, "
                "at most followed by a detail in parentheses."
            ),
        },
        "revision": {
            **COUNT,
            "description": "How many times the outputs were made again (0: never).",
        },
        "reprocessing": {
            "type": "boolean",
            "description": "A reprocess request is under way.",
        },
        "reprocessError": {
            "oneOf": [
                {"type": "null"},
                _object({"code": STRING, "message": STRING}),
            ],
            "description": "Why the last reprocess failed (the outputs stayed); null otherwise.",
        },
    }
)

REPROCESS_QUEUED = _object(
    {
        "jobId": STRING,
        "requestId": {"type": "string", "pattern": "^rpr_[0-9a-f]{32}$"},
        "revision": {**COUNT, "description": "The revision the job will have once done."},
        "presets": {"type": "array", "items": STRING},
    }
)

PRESET_VERSION: Schema = {
    "type": "string",
    "pattern": "^[0-9a-f]{10}$",
    "description": (
        "The first 10 hex digits of the SHA-256 of the preset's canonical JSON definition: "
        "an output whose `version` differs was made by another definition."
    ),
}

PRESET = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "width", "height", "fit", "format", "quality", "version"],
    "properties": {
        **OUTPUT_SPEC["properties"],
        "watermark": _object(
            {
                "text": {"type": "string", "minLength": 1, "maxLength": MAX_WATERMARK_TEXT},
                "corner": {"type": "string", "enum": list(CORNERS)},
                "opacity": {"type": "number", "minimum": 0, "maximum": 1},
                "size": {"type": "number", "exclusiveMinimum": 0, "maximum": 0.5},
            }
        ),
        "version": PRESET_VERSION,
    },
    "description": "A configured preset: its definition (defaults filled in) and version.",
}

PRESET_LIST = _object({"presets": {"type": "array", "items": PRESET}})

JOB_LIST = _object(
    {
        "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}},
        "nextCursor": _nullable(STRING),
    }
)

# --- webhooks ----------------------------------------------------------------------------

MAX_DESCRIPTION_CHARS = 256

WEBHOOK_REQUEST: Schema = {
    "type": "object",
    "examples": [{"url": "https://example.com/hooks/media", "events": list(JOB_EVENTS)}],
    "additionalProperties": False,
    "required": ["url", "events"],
    "properties": {
        "url": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_URL_LENGTH,
            "description": (
                "Where to POST events: an https URL whose host resolves only to public "
                "addresses (the stage `local` also allows http://127.0.0.1). No "
                "credentials, no fragment; redirects are not followed."
            ),
        },
        "events": {
            "type": "array",
            "minItems": 1,
            "uniqueItems": True,
            "items": {"type": "string", "enum": list(JOB_EVENTS)},
            "description": "The event types to send; webhook.test is always sent on request.",
        },
        "description": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_DESCRIPTION_CHARS,
            "pattern": FILENAME_PATTERN,
            "description": "Your note about the endpoint (no control or format characters).",
        },
    },
}

ENDPOINT_ID: Schema = {
    "type": "string",
    "pattern": rf"^{ENDPOINT_ID_PREFIX}[0-9a-f]{{24}}$",
    "description": "A webhook endpoint's id as POST /webhooks returned it.",
}

WEBHOOK_PROPERTIES: dict[str, Schema] = {
    "id": ENDPOINT_ID,
    "url": STRING,
    "events": {"type": "array", "items": {"type": "string", "enum": list(JOB_EVENTS)}},
    "description": _nullable(STRING),
    "createdAt": TIMESTAMP,
    "updatedAt": TIMESTAMP,
    "enabled": {"type": "boolean", "description": "False once a receiver answered 410 Gone."},
    "disabledReason": _nullable(STRING),
}

WEBHOOK = _object(WEBHOOK_PROPERTIES)

WEBHOOK_WITH_SECRET = _object(
    {
        **WEBHOOK_PROPERTIES,
        "secret": {
            "type": "string",
            "pattern": r"^whsec_[A-Za-z0-9+/]+={0,2}$",
            "description": (
                "The signing secret (Standard Webhooks: whsec_ and base64), shown this once."
            ),
        },
    }
)

WEBHOOK_LIST = _object(
    {"webhooks": {"type": "array", "items": {"$ref": "#/components/schemas/Webhook"}}}
)

EVENT_ID: Schema = {"type": "string", "pattern": r"^evt_[0-9a-f]{32}$"}

WEBHOOK_TEST_SENT = _object(
    {"eventId": EVENT_ID, "type": {"type": "string", "enum": [WEBHOOK_TEST]}},
    description="The test event is on its way; its attempts are logged like any other.",
)

DELIVERY_ATTEMPT = _object(
    {
        "endpointId": ENDPOINT_ID,
        "eventId": EVENT_ID,
        "type": {"type": "string", "enum": list(JOB_EVENTS)},
        "attempt": {"type": "integer", "minimum": 1},
        "at": TIMESTAMP,
        "url": STRING,
        "status": {"type": ["integer", "null"], "description": "The receiver's HTTP status."},
        "error": {
            "type": ["string", "null"],
            "description": (
                "Why no status: delivery_unreachable (no answer within 10 s, refused, TLS), "
                "endpoint_refused (the address is not public), endpoint_deleted, "
                "endpoint_disabled, job_gone, dead_lettered."
            ),
        },
        "latencyMs": {"type": ["integer", "null"], "minimum": 0},
        "answer": {
            "type": "string",
            "description": "The first 256 bytes of the receiver's answer, or the error's reason.",
        },
    }
)

DELIVERY_LIST = _object({"deliveries": {"type": "array", "items": DELIVERY_ATTEMPT}})

REPLAY_QUEUED = _object(
    {
        "eventId": EVENT_ID,
        "type": {"type": "string", "enum": list(JOB_EVENTS)},
        "endpoints": {
            "type": "array",
            "items": ENDPOINT_ID,
            "description": "The endpoints the event is sent to again.",
        },
    }
)

BACKFILL_ID: Schema = {
    "type": "string",
    "pattern": r"^bf_[0-9a-f]{24}$",
    "description": "A backfill's id as POST /backfills returned it.",
}

CREATED_BOUND = (
    "An ISO 8601 date-time with its offset (2026-12-01T00:00:00Z); jobs created at that "
    "moment are included."
)


def backfill_request(preset_names: Sequence[str]) -> Schema:
    """POST /backfills. `preset_names` are the stage's configured presets."""
    return {
        "type": "object",
        "examples": [{"presets": list(preset_names[:1]), "dryRun": True}],
        "additionalProperties": False,
        "required": ["presets"],
        "properties": {
            "presets": preset_names_schema(
                preset_names,
                "The configured presets every job in the range should have at their current "
                "version; a job lacking one gets it from its original.",
            ),
            "createdAfter": {
                "type": "string",
                "minLength": 1,
                "maxLength": 64,
                "description": f"Only jobs created at or after this. {CREATED_BOUND}",
            },
            "createdBefore": {
                "type": "string",
                "minLength": 1,
                "maxLength": 64,
                "description": (
                    f"Only jobs created at or before this (default: now). {CREATED_BOUND}"
                ),
            },
            "dryRun": {
                "type": "boolean",
                "description": "Count what would be done, and do nothing.",
            },
        },
    }


BACKFILL_COUNTS = _object(
    {
        "matched": {**COUNT, "description": "Jobs of the range read so far."},
        "toReprocess": {
            **COUNT,
            "description": "Jobs sent to be reprocessed (in a dry run: that would be).",
        },
        "done": {**COUNT, "description": "Jobs reprocessed: they have every preset now."},
        "failed": {**COUNT, "description": "Jobs whose reprocessing failed (see the job)."},
        "alreadyCurrent": {**COUNT, "description": "Jobs that had every preset current."},
        "originalExpired": {**COUNT, "description": "Jobs whose original is gone."},
        "notCompleted": {**COUNT, "description": "Jobs not COMPLETED (pending or failed)."},
        "cancelled": {**COUNT, "description": "Jobs sent but left as they were: cancelled."},
        "pending": {**COUNT, "description": "Jobs sent whose reprocessing has not ended."},
    }
)

BACKFILL = _object(
    {
        "backfillId": BACKFILL_ID,
        "status": {
            "type": "string",
            "enum": ["running", "completed", "cancelled", "failed"],
            "description": "completed: every page read and every job sent has ended.",
        },
        "presets": {"type": "array", "items": STRING},
        "createdAfter": TIMESTAMP,
        "createdBefore": TIMESTAMP,
        "dryRun": {"type": "boolean"},
        "pagesRead": COUNT,
        "allPagesRead": {"type": "boolean"},
        "counts": BACKFILL_COUNTS,
        "createdAt": TIMESTAMP,
        "updatedAt": TIMESTAMP,
        "completedAt": TIMESTAMP,
        "error": _object({"code": STRING, "message": STRING}),
    },
    required=[
        "backfillId",
        "status",
        "presets",
        "createdAfter",
        "createdBefore",
        "dryRun",
        "pagesRead",
        "allPagesRead",
        "counts",
        "createdAt",
        "updatedAt",
    ],
)

# What `#/components/schemas` publishes; $refs above point into it.
COMPONENTS: Mapping[str, Schema] = {
    "Error": ERROR,
    "LocalGatewayMessage": LOCAL_GATEWAY_MESSAGE,
    "Health": HEALTH,
    "UploadCreated": UPLOAD_CREATED,
    "Job": JOB,
    "Placeholder": PLACEHOLDER,
    "ResponsiveSet": RESPONSIVE_SET,
    "JobList": JOB_LIST,
    "Webhook": WEBHOOK,
    "WebhookWithSecret": WEBHOOK_WITH_SECRET,
    "WebhookList": WEBHOOK_LIST,
    "WebhookTestSent": WEBHOOK_TEST_SENT,
    "DeliveryList": DELIVERY_LIST,
    "ReplayQueued": REPLAY_QUEUED,
    "ReprocessQueued": REPROCESS_QUEUED,
    "PresetList": PRESET_LIST,
    "Backfill": BACKFILL,
}


# --- the interpreter ---------------------------------------------------------------------

_ANNOTATIONS = frozenset({"description", "default", "format", "examples"})


def validate(schema: Schema, value: Any, name: str) -> None:
    """Raise an ApiError naming `name` (the field) if `value` breaks `schema`."""
    unknown = set(schema) - _ANNOTATIONS - set(_ASSERTIONS)
    if unknown:
        raise TypeError(f"schema of {name} uses keywords no validator enforces: {unknown}")
    for keyword, check in _ASSERTIONS.items():
        if keyword in schema:
            check(schema, value, name)


def conforms(schema: Schema, value: Any) -> bool:
    try:
        validate(schema, value, "value")
    except ApiError:
        return False
    return True


def parse_query(
    schemas: Mapping[str, Schema], params: Mapping[str, Sequence[str]]
) -> dict[str, Any]:
    """Query parameters (every value given for each name) checked and converted."""
    unknown = set(params) - set(schemas)
    if unknown:
        raise InvalidRequest(f"Unknown query parameter(s): {', '.join(sorted(unknown))}.")
    parsed: dict[str, Any] = {}
    for name, schema in schemas.items():
        values = params.get(name)
        if not values:
            parsed[name] = schema.get("default")
            continue
        if len(values) > 1:
            raise InvalidRequest(f"{name} must be given at most once.")
        value: Any = values[0]
        if schema["type"] == "integer":
            if not _ASCII_INTEGER.fullmatch(value):
                raise InvalidRequest(f"{name} must be an integer.")
            value = int(value)
        validate(schema, value, name)
        parsed[name] = value
    return parsed


_JSON_TYPES: Mapping[str, Callable[[Any], bool]] = {
    "object": lambda value: isinstance(value, dict),
    "array": lambda value: isinstance(value, list),
    "string": lambda value: isinstance(value, str),
    "integer": lambda value: isinstance(value, int) and not isinstance(value, bool),
    "boolean": lambda value: isinstance(value, bool),
    "null": lambda value: value is None,
}
_ARTICLES = {
    "object": "an object",
    "array": "a list",
    "integer": "an integer",
    "boolean": "true or false",
}


def _type(schema: Schema, value: Any, name: str) -> None:
    expected = schema["type"]  # request models give one type; nullable ones are responses
    if not _JSON_TYPES[expected](value):
        raise InvalidRequest(f"{name} must be {_ARTICLES.get(expected, 'a ' + expected)}.")


def _enum(schema: Schema, value: Any, name: str) -> None:
    allowed = schema["enum"]
    if value not in allowed:
        error = ENUM_ERRORS.get(name.split("[", 1)[0], InvalidRequest)
        choices = ", ".join(map(str, allowed)) or "(none configured)"
        raise error(f"{name} {value!r} is not accepted; use one of {choices}.")


def _search(pattern: str, value: str) -> bool:
    """ECMA-262's reading: a closing `$` is the end of the string (in Python it also
    matches before a final newline)."""
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.search(pattern, value) is not None


def _pattern(schema: Schema, value: Any, name: str) -> None:
    if not _search(schema["pattern"], value):
        raise InvalidRequest(f"{name} is not valid: {schema.get('description', 'wrong format')}")


def _min_length(schema: Schema, value: Any, name: str) -> None:
    if len(value) < schema["minLength"]:
        raise InvalidRequest(f"{name} must not be empty.")


def _max_length(schema: Schema, value: Any, name: str) -> None:
    if len(value) > schema["maxLength"]:
        raise InvalidRequest(f"{name} must be at most {schema['maxLength']} characters.")


def _minimum(schema: Schema, value: Any, name: str) -> None:
    if value < schema["minimum"]:
        raise InvalidRequest(f"{name} must be at least {schema['minimum']}.")


def _maximum(schema: Schema, value: Any, name: str) -> None:
    if value > schema["maximum"]:
        raise InvalidRequest(f"{name} must be at most {schema['maximum']}.")


def _min_items(schema: Schema, value: Any, name: str) -> None:
    if len(value) < schema["minItems"]:
        raise InvalidRequest(f"{name} must list at least {schema['minItems']} item(s).")


def _unique_items(schema: Schema, value: Any, name: str) -> None:
    if schema["uniqueItems"] and len(set(map(repr, value))) != len(value):
        raise InvalidRequest(f"{name} must not repeat an item.")


def _items(schema: Schema, value: Any, name: str) -> None:
    for index, item in enumerate(value):
        validate(schema["items"], item, f"{name}[{index}]")


def _required(schema: Schema, value: Any, name: str) -> None:
    missing = [field for field in schema["required"] if field not in value]
    if missing:
        raise InvalidRequest(f"Missing required field(s): {', '.join(missing)}.")


def _additional_properties(schema: Schema, value: Any, name: str) -> None:
    if schema["additionalProperties"] is not False:
        raise TypeError(f"schema of {name}: only additionalProperties: false is enforced")
    unknown = sorted(set(value) - set(schema.get("properties", {})))
    if unknown:
        raise InvalidRequest(f"Unknown field(s): {', '.join(unknown)}.")


def _properties(schema: Schema, value: Any, name: str) -> None:
    for field, field_schema in schema["properties"].items():
        if field in value:
            # An object in a list is named by its path (outputs[1].width); others by the field.
            validate(field_schema, value[field], f"{name}.{field}" if name.endswith("]") else field)


# Checked in this order: the type first (the others assume it), then unknown and missing
# fields before the values of the fields.
_ASSERTIONS: Mapping[str, Callable[[Schema, Any, str], None]] = {
    "type": _type,
    "additionalProperties": _additional_properties,
    "required": _required,
    "properties": _properties,
    "enum": _enum,
    "pattern": _pattern,
    "minLength": _min_length,
    "maxLength": _max_length,
    "minimum": _minimum,
    "maximum": _maximum,
    "minItems": _min_items,
    "uniqueItems": _unique_items,
    "items": _items,
}
