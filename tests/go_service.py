"""What the Go service does to the database, as SQL: its table, its AutoMigrate, its inserts.

Derived from its GORM model (``internal/repository/gorm/message``: a uuid primary key,
``varchar(20)`` to, ``varchar(255)`` content, ``varchar(20)`` status, ``text`` raw_response,
``varchar(100)`` message_id, ``sent_at``, GORM's timestamps and soft delete, indexes on
message_id, sent_at, created_at and deleted_at) and from GORM's own migrator: go-gorm/gorm
``migrator/migrator.go`` (``AutoMigrate``, ``MigrateColumn``) and go-gorm/postgres
``migrator.go`` (``AlterColumn``, ``modifyColumn``).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

# What AutoMigrate creates when there is no table (status without NOT NULL, no defaults).
GO_SCHEMA = [
    'CREATE TABLE "messages" ("id" uuid, "to" varchar(20) NOT NULL, "content" varchar(255) NOT NULL,'
    ' "status" varchar(20), "raw_response" text, "message_id" varchar(100), "sent_at" timestamptz,'
    ' "created_at" timestamptz, "updated_at" timestamptz, "deleted_at" timestamptz, PRIMARY KEY ("id"))',
    'CREATE INDEX "idx_messages_message_id" ON "messages" ("message_id")',
    'CREATE INDEX "idx_messages_sent_at" ON "messages" ("sent_at")',
    'CREATE INDEX "idx_messages_created_at" ON "messages" ("created_at")',
    'CREATE INDEX "idx_messages_deleted_at" ON "messages" ("deleted_at")',
]

# What AutoMigrate sends for an existing table this service has migrated, one autocommit
# statement each, in the model's field order. For each field but the primary key (skipped by
# the postgres migrator), MigrateColumn compares the column with the model: "to" is
# varchar(32) here (the size differs), content is text (the type differs), and status,
# created_at and updated_at have a NOT NULL and a default the model lacks; AlterColumn then
# sends `ALTER ... TYPE ... USING` when the reported type is not the model's (varchar against
# "varchar(20)": always, for status too), `DROP NOT NULL` and `DROP DEFAULT`. Indexes are
# created when missing by name (`CREATE INDEX IF NOT EXISTS`): on a table this service
# created, all four; on an adopted one, none.
GO_AUTOMIGRATE = [
    'ALTER TABLE "messages" ALTER COLUMN "to" TYPE varchar(20) USING "to"::varchar(20)',
    'ALTER TABLE "messages" ALTER COLUMN "content" TYPE varchar(255) USING "content"::varchar(255)',
    'ALTER TABLE "messages" ALTER COLUMN "status" TYPE varchar(20) USING "status"::varchar(20)',
    'ALTER TABLE "messages" ALTER COLUMN "status" DROP NOT NULL',
    'ALTER TABLE "messages" ALTER COLUMN "status" DROP DEFAULT',
    'ALTER TABLE "messages" ALTER COLUMN "created_at" DROP NOT NULL',
    'ALTER TABLE "messages" ALTER COLUMN "created_at" DROP DEFAULT',
    'ALTER TABLE "messages" ALTER COLUMN "updated_at" DROP NOT NULL',
    'ALTER TABLE "messages" ALTER COLUMN "updated_at" DROP DEFAULT',
    'CREATE INDEX IF NOT EXISTS "idx_messages_message_id" ON "messages" ("message_id")',
    'CREATE INDEX IF NOT EXISTS "idx_messages_sent_at" ON "messages" ("sent_at")',
    'CREATE INDEX IF NOT EXISTS "idx_messages_created_at" ON "messages" ("created_at")',
    'CREATE INDEX IF NOT EXISTS "idx_messages_deleted_at" ON "messages" ("deleted_at")',
]

# GORM's Create writes every field of the model: the id and times made in Go, zero values too.
GO_INSERT = text(
    'INSERT INTO "messages" ("id","to","content","status","raw_response","message_id","sent_at",'
    '"created_at","updated_at","deleted_at") VALUES (:id, :to, :content, \'PENDING\', \'\', NULL, NULL,'
    " :now, :now, NULL)"
)


async def run_go_automigrate(engine: AsyncEngine) -> None:
    """Send what the Go seed command's AutoMigrate sends, each statement in its own transaction."""
    for statement in GO_AUTOMIGRATE:
        async with engine.begin() as connection:
            await connection.execute(text(statement))


async def go_insert(connection: AsyncConnection, to: str, content: str, now: datetime) -> uuid.UUID:
    """Insert a PENDING message as the Go service's code does; return its id."""
    message_id = uuid.uuid4()
    await connection.execute(GO_INSERT, {"id": message_id, "to": to, "content": content, "now": now})
    return message_id
