"""The OpenAPI document: every operation documents its answers, the real envelope and examples."""

from __future__ import annotations

from typing import Any

import pytest

from sms_dispatch.api.app import openapi_document

DOCUMENT = openapi_document()
OPERATIONS = [
    pytest.param(path, method, operation, id=f"{method.upper()} {path}")
    for path, methods in DOCUMENT["paths"].items()
    for method, operation in methods.items()
]
OPEN_WITHOUT_DATABASE = {"/", "/health", "/ping", "/metrics"}
ERROR_TYPES = {
    400: "VALIDATION_ERROR",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    409: "CONFLICT",
    500: "INTERNAL_ERROR",
    503: "DEPENDENCY_UNAVAILABLE",
}


def errors_of(operation: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Return the operation's error answers by status code."""
    return {int(code): answer for code, answer in operation["responses"].items() if int(code) >= 400}


@pytest.mark.parametrize(("path", "method", "operation"), OPERATIONS)
def test_every_operation_is_described(path: str, method: str, operation: dict[str, Any]) -> None:
    """Each operation has a summary and a description (its docstring)."""
    assert operation.get("summary") and operation.get("description")


@pytest.mark.parametrize(("path", "method", "operation"), OPERATIONS)
def test_success_uses_the_envelope(path: str, method: str, operation: dict[str, Any]) -> None:
    """Each success answer is the JSON envelope (the metrics page excepted, which is text)."""
    successes = {code: a for code, a in operation["responses"].items() if code.startswith("2")}
    assert successes
    for answer in successes.values():
        if path == "/metrics":
            assert next(iter(answer["content"])).startswith("text/plain")
            continue
        schema = answer["content"]["application/json"]["schema"]
        assert schema["$ref"].startswith("#/components/schemas/Envelope_")


@pytest.mark.parametrize(("path", "method", "operation"), OPERATIONS)
def test_every_error_is_the_error_envelope_with_an_example(
    path: str, method: str, operation: dict[str, Any]
) -> None:
    """Each error answer is the error envelope, with an example carrying that status as its integer
    code and its name as the type."""
    errors = errors_of(operation)
    assert 500 in errors
    for status, answer in errors.items():
        body = answer["content"]["application/json"]
        assert body["schema"]["$ref"] == "#/components/schemas/ErrorEnvelope"
        assert body["example"]["success"] is False
        assert body["example"]["error"]["code"] == status
        assert body["example"]["error"]["type"] == ERROR_TYPES[status]


def test_the_error_code_is_an_integer_in_the_schema() -> None:
    """The envelope's schema says what Go clients read: `code` an integer, the name in `type`."""
    properties = DOCUMENT["components"]["schemas"]["ErrorBody"]["properties"]
    assert properties["code"]["type"] == "integer"
    assert properties["type"]["type"] == "string"
    assert set(DOCUMENT["components"]["schemas"]["ErrorBody"]["required"]) == {"code", "type", "message"}


@pytest.mark.parametrize(("path", "method", "operation"), OPERATIONS)
def test_input_and_keys_and_dependencies_have_their_errors(
    path: str, method: str, operation: dict[str, Any]
) -> None:
    """Input means a 400; a key means a 401 (a 403 for operate routes); the database means a 503."""
    errors = errors_of(operation)
    if operation.get("parameters") or operation.get("requestBody"):
        assert 400 in errors
    if operation.get("security"):
        assert 401 in errors
    if method == "post" and operation.get("security"):
        assert 403 in errors
    if path not in OPEN_WITHOUT_DATABASE:
        assert 503 in errors


@pytest.mark.parametrize(("path", "method", "operation"), OPERATIONS)
def test_request_bodies_have_examples(path: str, method: str, operation: dict[str, Any]) -> None:
    """Each request body's schema carries an example to start from."""
    body = operation.get("requestBody")
    if body is None:
        return
    ref = body["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert DOCUMENT["components"]["schemas"][ref].get("examples")


def test_both_key_schemes_are_documented() -> None:
    """The document names both ways of sending a key."""
    schemes = DOCUMENT["components"]["securitySchemes"]
    assert schemes["bearerKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["bearerKey"]["description"],
    }
    assert (schemes["apiKeyHeader"]["in"], schemes["apiKeyHeader"]["name"]) == ("header", "X-API-Key")
