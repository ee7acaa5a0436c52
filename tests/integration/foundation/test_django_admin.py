"""Django admin: every model registered, staff only, secrets never shown."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.contrib import admin
from django.test import Client

from accounts.models import Token
from gateways import services as gateways
from tests.conftest import PASSWORD

APPS = ("accounts", "policies", "gateways")


def test_every_model_is_in_the_django_admin() -> None:
    missing = [
        m.__name__
        for app in APPS
        for m in apps.get_app_config(app).get_models()
        if m not in admin.site._registry
    ]
    assert missing == []


@pytest.mark.django_db
def test_only_staff_reach_the_django_admin(acme, alice, bob) -> None:  # type: ignore[no-untyped-def]
    client = Client()
    assert client.login(username="acme/bob@acme.test", password=PASSWORD)
    response = client.get("/django-admin/")
    assert response.status_code == 302 and "/login/" in response["Location"]
    alice.user.is_staff = True
    alice.user.is_superuser = True
    alice.user.save()
    staff = Client()
    assert staff.login(username="acme/alice@acme.test", password=PASSWORD)
    assert staff.get("/django-admin/").status_code == 200


@pytest.mark.django_db
def test_admin_changelists_load_with_search_and_never_show_secrets(acme, alice) -> None:  # type: ignore[no-untyped-def]
    site = gateways.create_site(acme, name="HQ")
    issued = gateways.issue_gateway_token(site)
    token = Token.objects.get(pk=issued.token.pk)
    alice.user.is_staff = True
    alice.user.is_superuser = True
    alice.user.save()
    client = Client()
    assert client.login(username="acme/alice@acme.test", password=PASSWORD)
    for model in admin.site._registry:
        if model._meta.app_label not in APPS:
            continue
        url = f"/django-admin/{model._meta.app_label}/{model._meta.model_name}/"
        response = client.get(url, {"q": "x"})
        assert response.status_code == 200, url
    page = client.get(f"/django-admin/accounts/token/{token.pk}/change/").content.decode()
    assert token.secret_hash not in page
    assert issued.secret.split("_", 2)[2] not in page
