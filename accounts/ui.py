"""Shared helpers for the admin web UI views.

Views take ``(request, ui, ...)``: the decorators below resolve the signed-in Django user to its
actor and account once and hand them over as a typed :class:`UI`, so no view reads
``request.user.actor`` itself and none can forget the account. Every object a URL names is
fetched through ``Model.objects.for_account(ui.account)``; an id of another account is simply not
found (404), never "forbidden", so ids leak nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import wraps
from typing import Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import urlencode

from django import forms
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.paginator import Page, Paginator
from django.db.models import Model, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from accounts.models import Account, Actor
from firezone_site.errors import ValidationFailed

P = ParamSpec("P")
M = TypeVar("M", bound=Model)

PER_PAGE = 50


@dataclass(frozen=True, slots=True)
class UI:
    """Who is asking: the signed-in actor and its account."""

    actor: Actor
    account: Account

    @property
    def is_admin(self) -> bool:
        return self.actor.type == Actor.Type.ADMIN


View = Callable[Concatenate[HttpRequest, UI, P], HttpResponse]
Wrapped = Callable[Concatenate[HttpRequest, P], HttpResponse]


def _resolve(request: HttpRequest) -> UI | None:
    user = request.user
    if not user.is_authenticated:
        return None
    # The sign-in is what names the account here, so the lookup goes through the user's reverse
    # one-to-one (two primary-key fetches, cached on the user for the rest of the request).
    try:
        actor: Actor = user.actor
    except Actor.DoesNotExist:
        raise DjangoPermissionDenied("This sign-in has no actor.") from None
    if actor.disabled_at is not None or actor.account.disabled_at is not None:
        raise DjangoPermissionDenied("This sign-in has no active actor.")
    if actor.type not in (Actor.Type.ADMIN, Actor.Type.USER):
        raise DjangoPermissionDenied("Service accounts cannot use the web UI.")
    if request.session.get("fz_clients_only"):  # accounts.signin.sessions.CLIENTS_ONLY_KEY
        raise DjangoPermissionDenied("This sign-in is for signing in a client only.")
    return UI(actor=actor, account=actor.account)


def _anonymous(request: HttpRequest) -> HttpResponse:
    if is_partial(request):
        # 286 stops htmx polling: a signed-out tab must not paste the sign-in page into a widget.
        return HttpResponse(status=286)
    return redirect_to_login(request.get_full_path())


def member_required(view: View[P]) -> Wrapped[P]:
    """Any signed-in user or admin; anonymous visitors go to the sign-in page."""

    @wraps(view)
    def wrapper(request: HttpRequest, /, *args: P.args, **kwargs: P.kwargs) -> HttpResponse:
        ui = _resolve(request)
        if ui is None:
            return _anonymous(request)
        return view(request, ui, *args, **kwargs)

    return wrapper


def admin_required(view: View[P]) -> Wrapped[P]:
    """Admins of the account only; members get 403, anonymous visitors the sign-in page."""

    @wraps(view)
    def wrapper(request: HttpRequest, /, *args: P.args, **kwargs: P.kwargs) -> HttpResponse:
        ui = _resolve(request)
        if ui is None:
            return _anonymous(request)
        if not ui.is_admin:
            raise DjangoPermissionDenied("Admins only.")
        return view(request, ui, *args, **kwargs)

    return wrapper


def get_or_404(queryset: QuerySet[M], pk: Any) -> M:
    """``queryset`` is already scoped to the account; a bad or foreign id is a 404."""
    try:
        key = uuid.UUID(str(pk))
    except ValueError:
        raise Http404("Not found") from None
    obj = queryset.filter(pk=key).first()
    if obj is None:
        raise Http404("Not found")
    return obj


def search(queryset: QuerySet[M], q: str, fields: Sequence[str]) -> QuerySet[M]:
    """Case-insensitive substring search over ``fields`` (all words must match somewhere)."""
    # PostgreSQL text cannot hold NUL: such a character can match nothing, so it is dropped
    # rather than turned into a database error.
    q = q.replace("\x00", "")
    for word in q.split()[:5]:
        cond = Q()
        for name in fields:
            cond |= Q(**{f"{name}__icontains": word})
        queryset = queryset.filter(cond)
    return queryset


def paginate(
    request: HttpRequest, queryset: QuerySet[M] | Sequence[Any], per_page: int = PER_PAGE
) -> Page[Any]:
    paginator = Paginator(queryset, per_page)
    return paginator.get_page(request.GET.get("page"))


def query_without_page(request: HttpRequest) -> str:
    """The current filters as a query string, for pagination links."""
    params = [(k, v) for k, values in request.GET.lists() for v in values if k != "page"]
    return urlencode(params)


def apply_errors(
    form: forms.Form, exc: ValidationFailed, aliases: Mapping[str, str] | None = None
) -> None:
    """Attach a service's field errors to the form (unknown fields become form-wide errors)."""
    for field, messages in exc.errors.items():
        target = (aliases or {}).get(field, field)
        if "[" in target:  # e.g. conditions[1].values[0] -> conditions
            target = target.split("[", 1)[0]
        name: str | None = target if target in form.fields else None
        for message in messages:
            form.add_error(name, message)


def error_text(exc: ValidationFailed) -> str:
    """All of a service's messages as one sentence, for pages without a form to attach them to."""
    return " ".join(m for msgs in exc.errors.values() for m in msgs)


def list_context(request: HttpRequest, page: Page[Any], **extra: Any) -> dict[str, Any]:
    return {
        "page": page,
        "q": request.GET.get("q", ""),
        "query": query_without_page(request),
        **extra,
    }


def is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


def is_partial(request: HttpRequest) -> bool:
    """An htmx request for a fragment (polling, search-as-you-type), not a boosted navigation."""
    return is_htmx(request) and request.headers.get("HX-Boosted") != "true"


def no_store(response: HttpResponse) -> HttpResponse:
    """For responses that carry a secret shown once: no cache may keep a copy."""
    response["Cache-Control"] = "no-store"
    return response


def render_page(
    request: HttpRequest,
    ui: UI,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    nav: str = "",
    status: int = 200,
) -> HttpResponse:
    ctx = {"ui": ui, "nav": nav, **(context or {})}
    return render(request, template, ctx, status=status)


def confirm_page(
    request: HttpRequest,
    ui: UI,
    *,
    title: str,
    question: str,
    cancel_url: str,
    nav: str,
    consequence: str = "",
    confirm_label: str = "Delete",
    error: str = "",
    status: int = 200,
) -> HttpResponse:
    return render_page(
        request,
        ui,
        "ui/_confirm.html",
        {
            "title": title,
            "question": question,
            "cancel_url": cancel_url,
            "consequence": consequence,
            "confirm_label": confirm_label,
            "error": error,
        },
        nav=nav,
        status=status,
    )


def form_page(
    request: HttpRequest,
    ui: UI,
    form: forms.Form,
    *,
    title: str,
    cancel_url: str,
    nav: str,
    submit_label: str = "Save",
    template: str = "ui/_form_page.html",
    extra: dict[str, Any] | None = None,
) -> HttpResponse:
    # 422 tells htmx-boosted forms the swap carries errors; browsers render it like a 200.
    status = 422 if form.is_bound and form.errors else 200
    return render_page(
        request,
        ui,
        template,
        {
            "form": form,
            "title": title,
            "cancel_url": cancel_url,
            "submit_label": submit_label,
            **(extra or {}),
        },
        nav=nav,
        status=status,
    )
