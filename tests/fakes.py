"""Hand-written fakes for the core's ports (the store and cache fakes live in the package)."""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from dataclasses import dataclass, field

from sms_dispatch.domain import Message, Outcome, SendResult


@dataclass
class RecordingSmsProvider:
    """Records every message it is asked to send; answers from a script, else delivers."""

    script: deque[SendResult] = field(default_factory=deque)
    delay_s: float = 0.0
    sent: list[Message] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0

    def then(self, *results: SendResult) -> RecordingSmsProvider:
        """Queue answers for the next sends, in order."""
        self.script.extend(results)
        return self

    async def send(self, message: Message, *, timeout_s: float) -> SendResult:
        """Record the message, wait ``delay_s``, answer the next scripted result."""
        self.sent.append(message)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
        finally:
            self.in_flight -= 1
        if self.script:
            return self.script.popleft()
        return SendResult(
            Outcome.DELIVERED, provider_message_id=str(uuid.uuid4()), http_status=202, raw_response="{}"
        )
