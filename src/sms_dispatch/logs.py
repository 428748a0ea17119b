"""Logging: structlog, JSON lines in production, readable console lines in development."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import Any, TextIO

import structlog

from sms_dispatch.observability.redaction import SecretRedactor


def configure_logging(
    *, json_lines: bool, level: str = "INFO", secrets: Iterable[str] = (), stream: TextIO | None = None
) -> None:
    """Set up structlog and route the stdlib loggers (uvicorn, alembic) through it.

    Every rendered line passes through ``SecretRedactor``: ``secrets`` and URL passwords
    become ``***``. Lines go to ``stream`` (standard error by default).
    """
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json_lines
        # Plain tracebacks: Rich's would wrap long lines (a secret split in two escapes redaction).
        else structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info if json_lines else _identity,
                renderer,
                SecretRedactor(secrets),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Our access line replaces uvicorn's; alembic announces each of its plugins at start-up.
    for noisy in ("uvicorn.access", "aiohttp.access", "alembic.runtime.plugins"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("alembic.runtime.migration").addFilter(_alembic_preamble_at_debug)


_ALEMBIC_PREAMBLE = ("Context impl ", "Will assume ")


def _alembic_preamble_at_debug(record: logging.LogRecord) -> bool:
    """Demote Alembic's "Context impl ..." lines to DEBUG: it prints them each time it looks at the
    schema, which says nothing an operator needs; "Running upgrade ..." lines stay at INFO."""
    if isinstance(record.msg, str) and record.msg.startswith(_ALEMBIC_PREAMBLE):
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger().isEnabledFor(logging.DEBUG)
    return True


def _identity(_: Any, __: str, event: Any) -> Any:
    return event


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """Return a structlog logger named ``name``."""
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger
