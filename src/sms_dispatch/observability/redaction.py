"""Secrets never reach a log line: the last step of the log pipeline rewrites the rendered line.

Two rules, applied to the finished text (so messages, fields, tracebacks and the lines of other
libraries are all covered, in JSON and console form alike):

- every known secret value (``Settings.secret_values()``: the provider key, database and Redis
  passwords, API keys) becomes ``***``, also in its JSON-escaped and ``repr`` forms, where it
  stands as a token of its own: a secret that starts (ends) with a letter, digit or ``_`` is not
  matched right after (before) another one. So a short secret (``SMS_PROVIDER_KEY=K``) is masked
  in ``key=K`` but leaves ``API_KEYS`` alone, and no secret is refused for its length;
- the password of any URL (``scheme://user:password@host``) becomes ``***``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

MASK = "***"

_URL_PASSWORD = re.compile(
    r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@\"']*:)(?P<password>[^\s@/\"']+)(?=@)"
)


_WORD = re.compile(r"\w")


def _token_pattern(form: str) -> str:
    """Return a pattern matching ``form`` only where no word character continues it on either side."""
    head = r"(?<!\w)" if _WORD.match(form[0]) else ""
    tail = r"(?!\w)" if _WORD.match(form[-1]) else ""
    return f"{head}{re.escape(form)}{tail}"


def _forms(secret: str) -> set[str]:
    """Return the ways ``secret`` can be written in a log line: as is, JSON-escaped, repr-escaped."""
    return {secret, json.dumps(secret)[1:-1], repr(secret)[1:-1]}


class SecretRedactor:
    """Replace known secret values and URL passwords in text with ``***``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        forms = {form for secret in secrets if secret for form in _forms(secret) if form}
        # Longest first, so a secret that contains another is masked whole.
        ordered = sorted(forms, key=len, reverse=True)
        self._secrets = re.compile("|".join(map(_token_pattern, ordered))) if ordered else None

    def redact(self, text: str) -> str:
        """Return ``text`` with every known secret and URL password masked."""
        if self._secrets is not None:
            text = self._secrets.sub(MASK, text)
        return _URL_PASSWORD.sub(rf"\g<head>{MASK}", text)

    def __call__(self, _logger: Any, _method: str, rendered: Any) -> Any:
        """Mask the rendered line (a structlog processor placed after the renderer)."""
        if isinstance(rendered, str):
            return self.redact(rendered)
        if isinstance(rendered, bytes):
            return self.redact(rendered.decode("utf-8", "replace")).encode()
        return rendered
