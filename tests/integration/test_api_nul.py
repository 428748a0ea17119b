"""A NUL character in a new message's content is a validation error on every database, not a
failed insert (PostgreSQL refuses the byte; SQLite would have cut the text there)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sms_dispatch.bootstrap import bootstrap
from sms_dispatch.config import Settings
from tests.integration.test_api import assert_error
from tests.integration.test_api_listing import BACKENDS, open_client, settings_for


@pytest.fixture(params=BACKENDS)
def settings(tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """Settings on each database: a SQLite file, a fresh PostgreSQL database."""
    return settings_for(request.param, request, tmp_path)


async def test_content_holding_nul_is_refused_and_nothing_is_stored(settings: Settings) -> None:
    """POST /messages with ``a<NUL>b`` answers the validation error naming the field; no row is added."""
    async with bootstrap(settings, run_dispatcher=False) as services:
        http = await open_client(services)
        async with http:
            response = await http.post("/messages", json={"to": "+905551111111", "content": "a\u0000b"})
        error = assert_error(response, 400, "VALIDATION_ERROR")
        assert error["details"] == [
            {"field": "content", "message": "must not contain the NUL character (U+0000)"}
        ]
        assert sum((await services.store.count_by_status()).values()) == 0
