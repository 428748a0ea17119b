"""Dependency aliases: routes ask for the services they use, never build them."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from sms_dispatch.bootstrap import Services
from sms_dispatch.dispatcher import Dispatcher
from sms_dispatch.service import MessageService


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _messages(request: Request) -> MessageService:
    return _services(request).messages


def _dispatcher(request: Request) -> Dispatcher:
    return _services(request).dispatcher


ServicesDep = Annotated[Services, Depends(_services)]
MessagesDep = Annotated[MessageService, Depends(_messages)]
DispatcherDep = Annotated[Dispatcher, Depends(_dispatcher)]
