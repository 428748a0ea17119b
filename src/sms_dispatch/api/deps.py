"""Dependency aliases: routes ask for the services they use, never build them.

The dependencies are ``async``: FastAPI runs a plain ``def`` dependency in a worker thread,
a thread hop per dependency and request that costs more than these lookups themselves.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from sms_dispatch.bootstrap import Services
from sms_dispatch.dispatcher import Dispatcher
from sms_dispatch.service import MessageService


def _services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def _services(request: Request) -> Services:
    return _services_of(request)


async def _messages(request: Request) -> MessageService:
    return _services_of(request).messages


async def _dispatcher(request: Request) -> Dispatcher:
    return _services_of(request).dispatcher


ServicesDep = Annotated[Services, Depends(_services)]
MessagesDep = Annotated[MessageService, Depends(_messages)]
DispatcherDep = Annotated[Dispatcher, Depends(_dispatcher)]
