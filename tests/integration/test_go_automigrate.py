"""The Go service's tools keep working on a migrated table: its seed command's AutoMigrate runs
without error, the service keeps sending (a row the Go code inserts afterwards too), and
``migrate`` puts back what AutoMigrate took away. PostgreSQL only: the Go service never ran on
SQLite."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import make_url, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from sms_dispatch.adapters.database import create_engine, migrate
from sms_dispatch.adapters.memory_cache import InMemorySentCache
from sms_dispatch.adapters.pg_notify import PgNewMessageSignal
from sms_dispatch.adapters.sql_store import SqlMessageStore
from sms_dispatch.clock import SystemClock
from sms_dispatch.delivery import Deliverer, DeliveryPolicy
from sms_dispatch.domain import NewMessage, Status
from tests.fakes import RecordingSmsProvider
from tests.go_service import GO_SCHEMA, go_insert, run_go_automigrate
from tests.schema_helpers import migrate_to

pytestmark = pytest.mark.postgres

PLAIN_INSERT = """INSERT INTO messages ("to", content) VALUES ('+905551111111', 'hi') RETURNING *"""
# Triggers that name a column of `messages` (in UPDATE OF or WHEN): PostgreSQL will not change
# that column's type while one exists.
PINNING_TRIGGERS = """
SELECT DISTINCT t.tgname || ' -> ' || a.attname AS pin
FROM pg_trigger AS t
JOIN pg_depend AS d ON d.classid = 'pg_trigger'::regclass AND d.objid = t.oid
JOIN pg_attribute AS a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
WHERE d.refobjid = 'messages'::regclass AND d.refobjsubid > 0
ORDER BY 1
"""


@pytest.fixture(params=["created", "adopted"])
async def migrated(request: pytest.FixtureRequest, pg_url: str) -> AsyncIterator[AsyncEngine]:
    """A database migrated by the service: created by it, or the Go service's table adopted."""
    engine = create_engine(make_url(pg_url).set(drivername="postgresql+asyncpg"), pool_size=4)
    if request.param == "adopted":
        async with engine.begin() as connection:
            for statement in GO_SCHEMA:
                await connection.execute(text(statement))
    await migrate(engine)
    yield engine
    await engine.dispose()


async def fetch(engine: AsyncEngine, sql: str, **values: Any) -> list[dict[str, Any]]:
    """Run ``sql`` by hand (as another program: not the service's connection name); return rows."""
    async with engine.begin() as connection:
        await connection.execute(text("SET LOCAL application_name = 'psql'"))
        result = await connection.execute(text(sql), values)
        return [dict(row._mapping) for row in result] if result.returns_rows else []


def deliverer(engine: AsyncEngine, provider: RecordingSmsProvider) -> Deliverer:
    """A deliverer over the service's store on ``engine``."""
    clock = SystemClock()
    return Deliverer(
        store=SqlMessageStore(engine),
        provider=provider,
        cache=InMemorySentCache(clock),
        clock=clock,
        policy=DeliveryPolicy(batch_size=10),
        instance_name="test",
    )


async def test_no_trigger_pins_a_column_type(migrated: AsyncEngine) -> None:
    """No trigger on messages names a column, so another tool may change any column's type."""
    assert await fetch(migrated, PINNING_TRIGGERS) == []


async def test_downgrade_of_0011_puts_the_row_triggers_back(migrated: AsyncEngine) -> None:
    """Below 0011 the row triggers of 0005 and 0006 are back (pinning their columns); at head again,
    none is."""
    async with migrated.connect() as connection:
        await connection.run_sync(migrate_to, "0009", down=True)
        await connection.commit()
    assert await fetch(migrated, PINNING_TRIGGERS) == [
        {"pin": "messages_notify_pending -> status"},
        {"pin": "messages_unvalidate -> content"},
        {"pin": "messages_unvalidate -> to"},
    ]
    await migrate(migrated)
    assert await fetch(migrated, PINNING_TRIGGERS) == []


async def test_go_automigrate_runs_on_a_migrated_table(migrated: AsyncEngine) -> None:
    """Every statement of the Go seed command's AutoMigrate succeeds, and sets the Go types."""
    await run_go_automigrate(migrated)
    types = await fetch(
        migrated,
        "SELECT column_name, data_type, character_maximum_length AS length, column_default, is_nullable"
        " FROM information_schema.columns WHERE table_name = 'messages'"
        " AND column_name IN ('to', 'content', 'status')",
    )
    assert {row["column_name"]: (row["length"], row["column_default"]) for row in types} == {
        "to": (20, None),
        "content": (255, None),
        "status": (20, None),
    }


async def test_the_service_keeps_sending_after_automigrate(migrated: AsyncEngine) -> None:
    """A row the Go code inserts after its AutoMigrate ran is sent by the running service; one
    the service created before is sent too."""
    store = SqlMessageStore(migrated)
    provider = RecordingSmsProvider()
    before = await store.create(NewMessage("+905551111111", "before"), now=datetime.now(UTC))
    await deliverer(migrated, provider).deliver_batch()  # the pool's statements are prepared now
    queued = await store.create(NewMessage("+905552222222", "queued"), now=datetime.now(UTC))

    await run_go_automigrate(migrated)
    async with migrated.begin() as connection:
        # A number the Go seed makes (+905 and 9 digits) that is no valid one, 255 characters.
        go_row = await go_insert(connection, "+905001234567", "x" * 255, datetime.now(UTC))
    for _ in range(3):  # a statement prepared before the change fails once, then is prepared again
        try:
            await deliverer(migrated, provider).deliver_batch()
        except DBAPIError:
            continue
    sent = {m.id for m in provider.sent}
    assert sent == {before.id, queued.id, go_row}
    for message_id in sent:
        message = await store.get(message_id)
        assert message is not None and message.status is Status.SUCCESS


async def test_migrate_restores_what_automigrate_took(
    migrated: AsyncEngine, json_log: Callable[[], list[dict[str, Any]]]
) -> None:
    """After AutoMigrate, migrate puts back the defaults and NOT NULLs, says which in one log
    line, and a plain-SQL insert of "to" and content works again."""
    await run_go_automigrate(migrated)
    with pytest.raises(DBAPIError, match="null value"):  # status NULL: the count trigger refuses it
        await fetch(migrated, PLAIN_INSERT)
    async with migrated.begin() as connection:  # a Go-era row with NULL times, left by hand
        await go_insert(connection, "+905553333333", "no times", datetime.now(UTC))
        await connection.execute(text("UPDATE messages SET created_at = NULL, updated_at = NULL"))
    await migrate(migrated)
    logs = json_log()
    restored = [
        line for line in logs if line["event"].startswith("restored what the Go service's AutoMigrate")
    ]
    assert [line["restored"] for line in restored] == [
        [
            "status DEFAULT 'PENDING'",
            "status NOT NULL",
            "created_at DEFAULT now()",
            "created_at NOT NULL",
            "updated_at DEFAULT now()",
            "updated_at NOT NULL",
        ]
    ]
    [row] = await fetch(migrated, PLAIN_INSERT)
    assert (row["status"], row["attempts"], row["validated"]) == ("PENDING", 0, False)
    assert isinstance(row["id"], UUID) and row["created_at"] == row["updated_at"] == row["next_attempt_at"]
    assert (
        await fetch(migrated, "SELECT id FROM messages WHERE created_at IS NULL OR updated_at IS NULL") == []
    )
    await migrate(migrated)
    assert len([line for line in json_log() if line["event"].startswith("restored")]) == 1


async def test_hand_edits_and_replays_behave_after_automigrate(migrated: AsyncEngine) -> None:
    """With the Go types in place, a hand edit of the recipient still makes the row checked again,
    and a row put back to PENDING still wakes listeners."""
    store = SqlMessageStore(migrated)
    message = await store.create(NewMessage("+905551111111", "hello"), now=datetime.now(UTC))
    await run_go_automigrate(migrated)
    listener, woken = PgNewMessageSignal(migrated.url), asyncio.Event()
    listener.subscribe(lambda _payload: woken.set())
    await listener.start()
    try:
        assert await listener.wait_listening(timeout_s=10)
        woken.clear()  # the wake-up every (re)connect gives
        await fetch(migrated, """UPDATE messages SET "to" = '+905554444444' WHERE id = :id""", id=message.id)
        [row] = await fetch(migrated, "SELECT validated FROM messages WHERE id = :id", id=message.id)
        assert row["validated"] is False
        await fetch(migrated, "UPDATE messages SET status = 'FAILED' WHERE id = :id", id=message.id)
        await fetch(migrated, "UPDATE messages SET status = 'PENDING' WHERE id = :id", id=message.id)
        await asyncio.wait_for(woken.wait(), timeout=10)
    finally:
        await listener.close()
