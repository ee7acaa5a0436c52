"""A real SMTP server in the test process (aiosmtpd) that the portal's mail goes to."""

from __future__ import annotations

import email
import email.policy
import socket
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self._cond = threading.Condition()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._cond:
            self.messages.append(message)  # type: ignore[arg-type]
            self._cond.notify_all()
        return "250 OK"

    def wait(self, count: int = 1, timeout: float = 20.0) -> list[EmailMessage]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.messages) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {count} mails, got {len(self.messages)}")
                self._cond.wait(left)
            return list(self.messages)


@pytest.fixture
def mailbox(settings: Any) -> Iterator[Mailbox]:
    from aiosmtpd.controller import Controller

    box = Mailbox()
    with socket.socket() as probe:  # a free port (aiosmtpd's readiness check cannot use port 0)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST = "127.0.0.1"
        settings.EMAIL_PORT = port
        settings.EMAIL_USE_TLS = False
        settings.EMAIL_USE_SSL = False
        settings.EMAIL_HOST_USER = ""
        settings.EMAIL_HOST_PASSWORD = ""
        yield box
    finally:
        controller.stop()


@pytest.fixture
def tamper(iam_server: Any, iam_configuration: Any) -> Iterator[Any]:
    from tests.integration.signin.oidc_lab import TokenTamper

    signing = iam_configuration["CANAILLE_OIDC"]["ACTIVE_JWKS"][0]
    proxy = TokenTamper(iam_server.url, signing)
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.fixture
def idp_user(iam_server: Any) -> Iterator[Any]:
    """A person at the identity provider whose verified address is alice's."""
    user = iam_server.random_user(emails=["alice@acme.test"])
    iam_server.login(user)
    iam_server.consent(user)
    try:
        yield user
    finally:
        iam_server.logout()
