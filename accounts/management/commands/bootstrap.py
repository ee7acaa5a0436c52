"""Create the first account and admin once; print the sign-in URL and the generated password."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from accounts import services
from accounts.models import Account


class Command(BaseCommand):
    help = "Create the first account and its admin (only when no account exists)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--account-name", default="My Company")
        parser.add_argument("--slug", default="main")
        parser.add_argument("--email", default="admin@example.com")
        parser.add_argument("--url", default="http://127.0.0.1:8000")

    def handle(self, *args: Any, **options: Any) -> None:
        if Account.objects.exists():
            self.stdout.write("An account exists already; nothing to bootstrap.")
            return
        result = services.bootstrap(
            account_name=options["account_name"], slug=options["slug"], admin_email=options["email"]
        )
        url = options["url"].rstrip("/")
        self.stdout.write(
            self.style.SUCCESS(
                "\n".join(
                    [
                        "",
                        "First account created. This password is shown only once:",
                        f"  sign in:   {url}/sign-in/",
                        f"  account:   {result.account.slug}",
                        f"  email:     {result.admin.email}",
                        f"  password:  {result.password}",
                        f"  Django admin (read-only, staff): {url}/django-admin/"
                        f"  (username {result.account.slug}/{result.admin.email})",
                        "",
                    ]
                )
            )
        )
