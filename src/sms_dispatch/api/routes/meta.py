"""Welcome, liveness and ping."""

from __future__ import annotations

from fastapi import APIRouter

from sms_dispatch.api.envelope import Envelope, ok
from sms_dispatch.api.schemas import Health, Pong, Welcome

router = APIRouter(tags=["meta"])


@router.get("/", response_model=Envelope[Welcome])
async def welcome() -> Envelope[Welcome]:
    """Say hello and point to the API documentation."""
    return ok(Welcome(message="Welcome to sms-dispatch; the API is documented at /swagger/"))


@router.get("/health", response_model=Envelope[Health])
async def health() -> Envelope[Health]:
    """Liveness: answers as long as the process serves HTTP."""
    return ok(Health())


@router.get("/ping", response_model=Envelope[Pong])
async def ping() -> Envelope[Pong]:
    """Answer pong."""
    return ok(Pong())
