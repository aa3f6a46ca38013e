"""The OpenAPI document: valid, complete, and true to what the API validates and answers."""

from __future__ import annotations

import json
import uuid
from typing import Any

import jsonschema_rs
import pytest
import schemathesis
from chalice.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib import clients, models, openapi
from chalicelib.errors import ApiError
from chalicelib.presets import load_presets
from infra import deploy
from tests.faults import aws_fault
from tests.pipeline import Pipeline, bearer
from tests.samples import jpeg

PRESETS = list(load_presets(None))


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return openapi.document(PRESETS)


def documented_schema(document: dict[str, Any], path: str, method: str, status: int) -> Any:
    """The body schema of one documented answer, its $refs resolvable."""
    answer = document["paths"][path][method.lower()]["responses"][str(status)]
    if "$ref" in answer:
        answer = document["components"]["responses"][answer["$ref"].rsplit("/", 1)[1]]
    schema = answer["content"]["application/json"]["schema"]
    return {**schema, "components": document["components"]}


def assert_documented(
    document: dict[str, Any], path: str, method: str, response: Any, status: int
) -> None:
    assert response.status_code == status, response.body
    # Chalice's test client leaves out the type of its gateway's own answers; its HTTP
    # server sends application/json (tests/test_schemathesis.py checks that one).
    assert response.headers.get("Content-Type", "application/json") == "application/json"
    validator = jsonschema_rs.Draft202012Validator(
        documented_schema(document, path, method, status)
    )
    errors = [str(error) for error in validator.iter_errors(response.json_body)]
    assert errors == [], (path, method, status, response.json_body)


# --- the document itself --------------------------------------------------------------------


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.1.0"
    loaded = schemathesis.openapi.from_dict(document)
    loaded.validate()  # the OpenAPI 3.1 meta-schema
    assert len(list(loaded.get_all_operations())) == len(openapi.OPERATIONS)
    schemas = [
        *document["components"]["schemas"].values(),
        *(
            body["schema"]
            for answer in document["components"]["responses"].values()
            for body in answer["content"].values()
        ),
        models.upload_request(PRESETS),
        *models.LIST_JOBS_QUERY.values(),
    ]
    for schema in schemas:  # each a valid JSON Schema 2020-12 (the meta-schema above is loose)
        jsonschema_rs.meta.validate(
            {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
        )
    json.dumps(document, allow_nan=False)  # plain JSON


def test_every_route_is_documented_and_nothing_else() -> None:
    from app import app

    routes = {
        (path, method): entry
        for path, methods in app.routes.items()
        for method, entry in methods.items()
        if (path, method) not in openapi.NOT_OPERATIONS
    }
    documented = {(operation.path, operation.method): operation for operation in openapi.OPERATIONS}
    assert set(routes) == set(documented)
    left_out = {(path, method) for path, methods in app.routes.items() for method in methods} - set(
        routes
    )
    assert left_out == set(openapi.NOT_OPERATIONS)  # each one a route the app serves
    for key, entry in routes.items():
        operation = documented[key]
        assert (entry.authorizer is not None) == operation.secured, key
        assert list(entry.view_args) == list(operation.path_parameters), key


def test_the_document_names_every_route_with_its_security(document: dict[str, Any]) -> None:
    from app import app

    served = {
        (path, method.lower())
        for path, methods in app.routes.items()
        for method in methods
        if (path, method) not in openapi.NOT_OPERATIONS
    }
    listed = {(path, method) for path, item in document["paths"].items() for method in item}
    assert served == listed
    scheme = document["components"]["securitySchemes"][openapi.SECURITY_SCHEME]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")  # Authorization: Bearer <key>
    assert document["security"] == [{openapi.SECURITY_SCHEME: []}]
    public = {
        path
        for path, item in document["paths"].items()
        for operation in item.values()
        if operation.get("security") == []
    }
    assert public == {"/health", "/openapi.json"}


def test_the_error_codes_are_every_api_error_and_every_gateway_answer(
    document: dict[str, Any],
) -> None:
    codes = document["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"][
        "enum"
    ]
    assert set(codes) == {error.code for error in models.api_error_types()}
    assert {code for code, _ in deploy.GATEWAY_RESPONSES.values()} <= set(codes)
    assert {"invalid_request", "payload_too_large", "unsupported_media_type", "throttled"} <= set(
        codes
    )
    for status in (400, 401, 403, 404, 413, 415, 429, 500, 503):
        assert f"Error{status}" in document["components"]["responses"], status


def test_every_operation_documents_its_statuses(document: dict[str, Any]) -> None:
    statuses = {
        (path, method): set(item[method]["responses"])
        for path, item in document["paths"].items()
        for method in item
    }
    assert statuses[("/uploads", "post")] == {
        "201",
        "400",
        "401",
        "403",
        "413",
        "415",
        "429",
        "500",
        "503",
    }
    assert statuses[("/jobs", "get")] == {"200", "400", "401", "403", "415", "429", "500", "503"}
    assert statuses[("/jobs/{job_id}", "get")] == {
        "200",
        "400",
        "401",
        "403",
        "404",
        "415",
        "429",
        "500",
        "503",
    }
    assert statuses[("/health", "get")] == {"200", "400", "415", "429", "500"}
    assert statuses[("/openapi.json", "get")] == {"200", "400", "415", "429", "500"}


def test_the_stage_presets_are_the_documented_choice() -> None:
    body = openapi.document(["card", "hero"])["paths"]["/uploads"]["post"]["requestBody"]
    schema = body["content"]["application/json"]["schema"]
    assert schema["properties"]["presets"]["items"]["enum"] == ["card", "hero"]


# --- one definition: the validator and the document agree --------------------------------------

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.text(max_size=8)
PRINTABLE = st.characters(exclude_categories=["Cc", "Cs"])
BOUNDARY = models.MAX_FILENAME_CHARS
BODIES = (
    st.fixed_dictionaries(
        {},
        optional={
            "contentType": st.sampled_from(models.CONTENT_TYPES) | JSON_SCALARS,
            "filename": st.text(PRINTABLE, max_size=3)
            | st.text(PRINTABLE, min_size=BOUNDARY - 1, max_size=BOUNDARY + 1)
            | st.sampled_from(["a\x00", "b\x1f", "\x7fc", "d\x85", "e\x9f", "\xa0f", "g\n"])
            | JSON_SCALARS,
            "presets": st.lists(st.sampled_from([*PRESETS, "huge"]) | JSON_SCALARS, max_size=4)
            | JSON_SCALARS,
            "extra": JSON_SCALARS,
        },
    )
    | JSON_SCALARS
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(BODIES)
def test_the_validator_accepts_exactly_what_the_schema_does(body: Any) -> None:
    schema = models.upload_request(PRESETS)
    try:
        models.validate(schema, body, "The request body")
        accepted = True
    except ApiError:
        accepted = False
    assert accepted == jsonschema_rs.Draft202012Validator(schema).is_valid(body), body


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["status", "limit", "cursor"]),
        st.lists(st.text(max_size=12) | st.integers(-5, 200).map(str), min_size=1, max_size=2),
    )
)
def test_query_parsing_agrees_with_the_documented_parameters(params: dict[str, list[str]]) -> None:
    try:
        parsed = models.parse_query(models.LIST_JOBS_QUERY, params)
    except ApiError:
        parsed = None
    single = all(len(values) == 1 for values in params.values())
    valid = single
    for name, values in params.items():
        schema = models.LIST_JOBS_QUERY[name]
        value: Any = values[0]
        if schema["type"] == "integer":
            value = int(value) if value.isascii() and value.isdigit() else value
        valid = valid and jsonschema_rs.Draft202012Validator(schema).is_valid(value)
    assert (parsed is not None) == valid, params


def test_the_validator_refuses_a_rule_it_does_not_enforce() -> None:
    with pytest.raises(TypeError, match="maxItems"):
        models.validate({"type": "array", "maxItems": 2}, [], "list")


# --- what the API answers is what the document says ---------------------------------------------


def test_success_answers_match_their_schemas(
    document: dict[str, Any], client: Client, pipeline: Pipeline, acme_key: str
) -> None:
    headers = bearer(acme_key)
    assert_documented(document, "/health", "GET", client.http.get("/health"), 200)
    served = client.http.get("/openapi.json")
    assert_documented(document, "/openapi.json", "GET", served, 200)
    assert served.json_body == document
    created = client.http.post("/uploads", headers=headers, body=b'{"contentType": "image/png"}')
    assert_documented(document, "/uploads", "POST", created, 201)
    completed = pipeline.process(jpeg(), presets=["thumb"])
    failed = pipeline.process(b"not an image at all", presets=["thumb"])
    assert (completed["status"], failed["status"]) == ("COMPLETED", "FAILED")
    for job_id in (created.json_body["jobId"], completed["jobId"], failed["jobId"]):
        job = client.http.get(f"/jobs/{job_id}", headers=headers)
        assert_documented(document, "/jobs/{job_id}", "GET", job, 200)
    presets = client.http.get("/presets", headers=headers)
    assert_documented(document, "/presets", "GET", presets, 200)
    listed = client.http.get("/jobs?limit=2", headers=headers)
    assert_documented(document, "/jobs", "GET", listed, 200)
    assert listed.json_body["nextCursor"]


def test_error_answers_match_their_schemas(
    document: dict[str, Any], client: Client, acme_key: str
) -> None:
    headers = bearer(acme_key)
    post = client.http.post
    cases = [
        ("/uploads", "POST", post("/uploads", headers=headers, body=b"{}"), 400),
        ("/uploads", "POST", post("/uploads", headers=headers, body=b" " * 20000), 413),
        (
            "/uploads",
            "POST",
            post("/uploads", headers={**headers, "Content-Type": "text/csv"}, body=b"a,b"),
            415,
        ),
        ("/uploads", "POST", post("/uploads", headers=bearer("x" * 20), body=b"{}"), 401),
        ("/jobs", "GET", client.http.get("/jobs?limit=0", headers=headers), 400),
        ("/jobs", "GET", client.http.get("/jobs"), 401),  # no header: the gateway's answer
        ("/jobs/{job_id}", "GET", client.http.get("/jobs/nope", headers=headers), 404),
        ("/jobs/{job_id}", "GET", client.http.get("/jobs/nope?x=1", headers=headers), 400),
        ("/presets", "GET", client.http.get("/presets?x=1", headers=headers), 400),
        ("/presets", "GET", client.http.get("/presets"), 401),
        ("/health", "GET", client.http.get("/health?x=1"), 400),
        ("/openapi.json", "GET", client.http.get("/openapi.json?x=1"), 400),
    ]
    for path, method, response, status in cases:
        assert_documented(document, path, method, response, status)


def test_a_transient_failure_answers_the_documented_503(
    document: dict[str, Any], client: Client, acme_key: str
) -> None:
    with aws_fault(clients.dynamodb(), "Query", code="ProvisionedThroughputExceededException"):
        response = client.http.get("/jobs", headers=bearer(acme_key))
    assert_documented(document, "/jobs", "GET", response, 503)
    assert response.headers["Retry-After"] == "1"
    with aws_fault(clients.dynamodb(), "GetItem", code="InternalServerError", status=500, skip=1):
        response = client.http.get(f"/jobs/{uuid.uuid4()}", headers=bearer(acme_key))
    assert_documented(document, "/jobs/{job_id}", "GET", response, 503)
