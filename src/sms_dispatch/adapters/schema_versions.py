"""The schema a database holds against the one this build needs, who wrote it, and who still runs.

Plain reads and one write on a synchronous ``Connection`` (through ``AsyncConnection.run_sync``),
used by ``adapters/database.py``: ``read_state`` before any command touches the tables,
``older_instances`` before an upgrade, ``record_upgrade`` in the upgrade's own transaction
(the ``schema_upgrades`` table, migration 0010).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from packaging.version import InvalidVersion, Version
from sqlalchemy import Connection, insert, inspect, select

from sms_dispatch.adapters.tables import instances, schema_upgrades

MIGRATE_HINT = "run `sms-dispatch migrate`"
ALLOW_HINT = "set MIGRATE_ALLOW_OLDER_INSTANCES=true (or pass --allow-older-instances)"


@dataclass(frozen=True, slots=True)
class SchemaState:
    """The database's schema revision beside the newest one this build ships."""

    current: str | None
    """The database's revision; None when it was never migrated."""
    head: str
    known: bool
    """True when ``current`` is one of this build's revisions (or None)."""
    has_messages: bool
    """True when a ``messages`` table exists (ours, or the Go service's not yet adopted)."""
    written_by: str | None = None
    """The version that upgraded the database to ``current``, when it recorded itself."""

    @property
    def at_head(self) -> bool:
        """True when the database holds exactly the schema this build needs."""
        return self.current == self.head

    def shown(self) -> str:
        """Return the current revision as a message names it."""
        if self.current is not None:
            return self.current
        return (
            "none (the Go service's table, not yet adopted)" if self.has_messages else "none (empty database)"
        )

    def refusal(self, version: str) -> str | None:
        """Return why a command of ``version`` that does not migrate must not run here, or None."""
        if self.at_head:
            return None
        if not self.known:
            return self.too_new(version)
        return f"database schema is at {self.shown()}, this version needs {self.head}: {MIGRATE_HINT}"

    def too_new(self, version: str) -> str:
        """Return the refusal for a schema newer than ``version`` knows."""
        writer = (
            f"sms-dispatch {self.written_by}" if self.written_by else "a version that did not record itself"
        )
        newer = f"sms-dispatch {self.written_by} or newer" if self.written_by else "a newer sms-dispatch"
        return (
            f"database schema is at {self.current}, written by {writer}; this version ({version}) knows"
            f" the schema up to {self.head}: run {newer}"
        )


def read_state(connection: Connection, script: ScriptDirectory) -> SchemaState:
    """Return the schema state of the database behind ``connection``."""
    current = MigrationContext.configure(connection).get_current_revision()
    head = script.get_current_head()
    if head is None:  # pragma: no cover - the package always ships its migrations
        raise RuntimeError("no migrations found in the package")
    known = current is None or current in {rev.revision for rev in script.walk_revisions()}
    tables = inspect(connection)
    written_by = None
    if not known and tables.has_table(schema_upgrades.name):
        statement = (
            select(schema_upgrades.c.version)
            .where(schema_upgrades.c.revision_to == current)
            .order_by(schema_upgrades.c.id.desc())
            .limit(1)
        )
        written_by = connection.execute(statement).scalar_one_or_none()
    return SchemaState(
        current=current,
        head=head,
        known=known,
        has_messages=tables.has_table("messages"),
        written_by=written_by,
    )


def older_instances(
    connection: Connection, *, version: str, seen_since: datetime, excluding: str | None = None
) -> list[tuple[str, str]]:
    """Return ``(name, version)`` of each instance seen since ``seen_since`` running an older version.

    ``excluding`` names this process: a row under its own name is its previous run's (a restart
    into a newer build within the heartbeat window), not another instance still sending.

    A version that cannot be read as one (PEP 440) counts as older: nobody can say it is not.
    """
    if not inspect(connection).has_table(instances.name):
        return []
    statement = (
        select(instances.c.name, instances.c.version)
        .where(instances.c.last_heartbeat_at >= seen_since)
        .order_by(instances.c.name)
    )
    if excluding is not None:
        statement = statement.where(instances.c.name != excluding)
    ours = Version(version)
    return [(name, theirs) for name, theirs in connection.execute(statement) if _older(theirs, ours)]


def _older(theirs: str, ours: Version) -> bool:
    try:
        return Version(theirs) < ours
    except InvalidVersion:
        return True


def describe_older(found: list[tuple[str, str]], *, before: str | None, head: str) -> str:
    """Return the refusal to upgrade while the ``found`` older instances run."""
    shown = ", ".join(f"{name} ({version})" for name, version in found[:5])
    more = f" and {len(found) - 5} more" if len(found) > 5 else ""
    return (
        f"not upgrading the schema from {before or 'none'} to {head}: {len(found)} instance(s) of an"
        f" older version still send heartbeats ({shown}{more}) and may break on the new schema;"
        f" stop them first, or {ALLOW_HINT}"
    )


def record_upgrade(
    connection: Connection, *, before: str | None, after: str, version: str, now: datetime
) -> None:
    """Record that ``version`` upgraded the schema from ``before`` to ``after`` at ``now``."""
    connection.execute(
        insert(schema_upgrades).values(
            revision_from=before, revision_to=after, version=version, upgraded_at=now
        )
    )
