"""SCIM 2.0 server (RFC 7643/7644) per directory at ``/scim/v2/<directory id>/``.

The protocol (routing, validation, PATCH, filters, ETags, errors) is ``scim2-server``'s, on the
models of ``scim2-models``; this module is the storage under it. A User is an :class:`Identity`
of the directory (the whole SCIM resource in ``claims["scim"]``) and the :class:`Actor` it names;
a Group is a synced :class:`Group` (the resource in ``Group.scim``) whose members are its
memberships. Every request is one transaction; deprovisioning (``active: false`` or DELETE)
disables or deletes the actor at once, which revokes its flows through the access events.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Generator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from scim2_models import (
    AuthenticationScheme,
    Bulk,
    ChangePassword,
    EnterpriseUser,
    ETag,
    External,
    Filter,
    Meta,
    NotFoundException,
    Patch,
    PreconditionFailedException,
    Reference,
    Resource,
    ResourceType,
    ResponseParameters,
    ScimFilter,
    ScimProvider,
    SearchRequest,
    ServiceProviderConfig,
    Sort,
    UnauthorizedException,
    UniquenessException,
    User,
)
from scim2_models import (
    Group as ScimGroup,
)
from scim2_server.applications.base import BaseApplication
from scim2_server.handler import ScimHandler
from scim2_server.memory import _page
from scim2_server.requests import ScimRequest
from scim2_server.storage import ScimStorage, SearchPage

from accounts import services
from accounts.directories.engine import issuer_for
from accounts.models import Actor, Directory, Group, Identity, Membership, Token
from firezone_site.errors import ValidationFailed
from firezone_site.events import AccessChanged, publish

CONFIG = ServiceProviderConfig(
    documentation_uri=None,
    patch=Patch(supported=True),
    bulk=Bulk(supported=False, max_operations=0, max_payload_size=0),
    filter=Filter(supported=True, max_results=1000),
    change_password=ChangePassword(supported=False),
    sort=Sort(supported=True),
    etag=ETag(supported=True),
    authentication_schemes=[
        AuthenticationScheme(
            type=AuthenticationScheme.Type.oauthbearertoken,
            name="Bearer token",
            description="The directory's SCIM token (issued on its page)",
            spec_uri=Reference[External]("https://datatracker.ietf.org/doc/html/rfc6750"),
        )
    ],
)
PROVIDER = ScimProvider(
    models=[User, EnterpriseUser, ScimGroup],
    resource_types=[
        ResourceType.from_resource(User[EnterpriseUser]),
        ResourceType.from_resource(ScimGroup),
    ],
    config=CONFIG,
)


def _now() -> datetime:
    return datetime.now(UTC)


def _email_of(resource: Any) -> str:
    candidates = [getattr(resource, "user_name", None) or ""]
    emails = getattr(resource, "emails", None) or []
    candidates += [e.value for e in emails if getattr(e, "primary", False) and e.value]
    candidates += [e.value for e in emails if e.value]
    for value in candidates:
        value = value.strip().lower()
        try:
            validate_email(value)
        except DjangoValidationError:
            continue
        return value[:254]
    return ""


def _name_of(resource: Any) -> str:
    name = getattr(resource, "name", None)
    for value in (
        getattr(resource, "display_name", None),
        name.formatted if name is not None else None,
        " ".join(p for p in (name.given_name, name.family_name) if p) if name else None,
        getattr(resource, "user_name", None),
    ):
        if value and value.strip():
            return value.strip()[:255]
    return "SCIM user"


class DirectoryStorage(ScimStorage):
    """The SCIM resources of one directory, in PostgreSQL."""

    def __init__(self, directory: Directory) -> None:
        self.directory = directory
        self.account_id = directory.account_id
        self.issuer = issuer_for(directory)

    # --- rows ----------------------------------------------------------------------------------

    def _model(self, resource_type: ResourceType) -> type[Resource[Any]]:
        model = PROVIDER.model_for(resource_type)
        assert model is not None
        return model  # type: ignore[return-value]

    def _users(self) -> Any:
        return Identity.objects.for_account(self.account_id).filter(
            directory=self.directory, issuer=self.issuer
        )

    def _groups(self) -> Any:
        return Group.objects.for_account(self.account_id).filter(directory=self.directory)

    def _is_user(self, resource_type: ResourceType) -> bool:
        return resource_type.name == "User"

    def _load(self, resource_type: ResourceType, doc: dict[str, Any]) -> Resource[Any]:
        return self._model(resource_type).model_validate(doc)

    def _docs(self, resource_type: ResourceType) -> list[dict[str, Any]]:
        if self._is_user(resource_type):
            return [c["scim"] for c in self._users().values_list("claims", flat=True)]
        return list(self._groups().values_list("scim", flat=True))

    def _row(self, resource_type: ResourceType, resource_id: str, *, lock: bool = False) -> Any:
        qs = self._users().filter(subject=resource_id) if self._is_user(resource_type) else None
        if qs is None:
            qs = self._groups().filter(provider_id=resource_id)
        if lock:
            qs = qs.select_for_update()
        row = qs.first()
        if row is None:
            raise NotFoundException(detail=f"No {resource_type.name} {resource_id}")
        return row

    @staticmethod
    def _doc_of(row: Any) -> dict[str, Any]:
        return row.claims["scim"] if isinstance(row, Identity) else row.scim  # type: ignore[no-any-return]

    # --- the storage contract ------------------------------------------------------------------

    @contextmanager
    def operation(self) -> Generator[None]:
        with transaction.atomic():
            yield

    def get(
        self,
        resource_type: ResourceType,
        resource_id: str,
        *,
        response_parameters: ResponseParameters[Any] | None = None,
    ) -> Resource[Any]:
        return self._load(resource_type, self._doc_of(self._row(resource_type, resource_id)))

    def search(
        self,
        resource_types: list[ResourceType],
        search_request: SearchRequest[Any],
        *,
        position: Any = None,
    ) -> SearchPage:
        found: list[Resource[Any]] = []
        scim_filter = search_request.filter
        for resource_type in resource_types:
            model = self._model(resource_type)
            bound = ScimFilter[model](str(scim_filter)) if scim_filter is not None else None  # type: ignore[valid-type]
            for doc in self._docs(resource_type):
                resource = model.model_validate(doc)
                if bound is None or bound.match(resource):
                    found.append(resource)
        return _page(search_request, position, found)

    def _check_unique(self, resource_type: ResourceType, resource: Any) -> None:
        if not self._is_user(resource_type):
            return
        wanted = (resource.user_name or "").lower()
        for doc in self._docs(resource_type):
            if doc.get("id") != resource.id and (doc.get("userName") or "").lower() == wanted:
                raise UniquenessException(detail=f"userName {resource.user_name!r} is taken")

    @staticmethod
    def _check_version(doc: dict[str, Any], expected: str | None) -> None:
        if expected is not None and (doc.get("meta") or {}).get("version") != expected:
            raise PreconditionFailedException(detail="The resource changed")

    @staticmethod
    def _version(previous: str | None) -> str:
        n = int((previous or 'W/"0"').removeprefix('W/"').rstrip('"') or 0) + 1
        return f'W/"{n}"'

    def create(self, resource_type: ResourceType, resource: Resource[Any]) -> Resource[Any]:
        resource = resource.model_copy(deep=True)
        resource.id = uuid.uuid4().hex
        now = _now()
        resource.meta = Meta(
            resource_type=resource_type.name,
            created=now,
            last_modified=now,
            version=self._version(None),
        )
        self._check_unique(resource_type, resource)
        doc = resource.model_dump()
        if self._is_user(resource_type):
            self._create_user(resource, doc)
        else:
            group = Group.objects.for_account(self.account_id).create(
                account_id=self.account_id,
                directory=self.directory,
                provider_id=resource.id,
                kind=Group.Kind.SYNCED,
                name=_name_of(resource),
                scim=doc,
            )
            self._set_members(group, resource)
        return self._load(resource_type, doc)

    def update(
        self,
        resource_type: ResourceType,
        resource: Resource[Any],
        *,
        expected_version: str | None = None,
    ) -> Resource[Any]:
        row = self._row(resource_type, str(resource.id), lock=True)
        stored = self._doc_of(row)
        self._check_version(stored, expected_version)
        self._check_unique(resource_type, resource)
        updated = type(resource).model_validate(resource.model_dump())
        meta = stored.get("meta") or {}
        updated.meta = Meta(
            resource_type=resource_type.name,
            created=meta.get("created"),
            last_modified=_now(),
            version=self._version(meta.get("version")),
        )
        doc = updated.model_dump()
        if isinstance(row, Identity):
            self._update_user(row, updated, doc)
        else:
            row.scim = doc
            row.name = _name_of(updated)
            row.save(update_fields=["scim", "name"])
            self._set_members(row, updated)
        return self._load(resource_type, doc)

    def delete(
        self, resource_type: ResourceType, resource_id: str, *, expected_version: str | None = None
    ) -> None:
        row = self._row(resource_type, resource_id, lock=True)
        self._check_version(self._doc_of(row), expected_version)
        if isinstance(row, Identity):
            self._delete_user(row)
            return
        event = AccessChanged(
            account_id=self.account_id,
            reason="group_deleted",
            group_ids=frozenset({row.pk}),
            actor_ids=frozenset(row.memberships.values_list("actor_id", flat=True)),
            policy_ids=frozenset(row.policies.values_list("pk", flat=True)),
        )
        row.delete()
        publish(event)

    # --- users onto actors ---------------------------------------------------------------------

    def _create_user(self, resource: Any, doc: dict[str, Any]) -> None:
        email = _email_of(resource)
        actor = (
            Actor.objects.for_account(self.account_id).filter(email=email).first()
            if email
            else None
        )
        if actor is None:
            actor = Actor.objects.for_account(self.account_id).create(
                account_id=self.account_id,
                type=Actor.Type.USER,
                email=email,
                name=_name_of(resource),
                directory=self.directory,
                provider_id=resource.id,
            )
            group = services.everyone_group(self.account_id)
            Membership.objects.for_account(self.account_id).get_or_create(
                account_id=self.account_id, group=group, actor=actor
            )
        Identity.objects.for_account(self.account_id).create(
            account_id=self.account_id,
            actor=actor,
            issuer=self.issuer,
            subject=resource.id,
            email=email,
            claims={"scim": doc},
            directory=self.directory,
        )
        if resource.active is False:
            self._deprovision(actor)

    def _owned(self, actor: Actor) -> bool:
        return actor.directory_id == self.directory.pk

    def _update_user(self, identity: Identity, resource: Any, doc: dict[str, Any]) -> None:
        actor = identity.actor
        identity.claims = {"scim": doc}
        identity.email = _email_of(resource)
        identity.save(update_fields=["claims", "email"])
        if self._owned(actor):
            actor.name = _name_of(resource)
            email = identity.email
            taken = (
                Actor.objects.for_account(self.account_id)
                .filter(email=email)
                .exclude(pk=actor.pk)
                .exists()
            )
            if email and not taken:
                actor.email = email
            actor.save(update_fields=["name", "email"])
        if resource.active is False:
            self._deprovision(actor)
        elif actor.disabled_at is not None and self._owned(actor):
            services.enable_actor(actor)

    def _deprovision(self, actor: Actor) -> None:
        if self._owned(actor):
            try:
                services.disable_actor(actor)
                return
            except ValidationFailed:
                pass  # the account's last admin: keep it, but take the directory's groups away
        self._leave_groups(actor)

    def _leave_groups(self, actor: Actor) -> None:
        memberships = Membership.objects.for_account(self.account_id).filter(
            actor=actor, group__directory=self.directory
        )
        group_ids = frozenset(memberships.values_list("group_id", flat=True))
        if group_ids:
            memberships.delete()
            publish(
                AccessChanged(
                    account_id=self.account_id,
                    reason="membership_removed",
                    actor_ids=frozenset({actor.pk}),
                    group_ids=group_ids,
                )
            )

    def _delete_user(self, identity: Identity) -> None:
        actor = identity.actor
        subject = identity.subject
        identity.delete()
        for group in self._groups().select_for_update():
            members = group.scim.get("members") or []
            kept = [m for m in members if m.get("value") != subject]
            if len(kept) != len(members):
                group.scim = (
                    {**group.scim, "members": kept}
                    if kept
                    else {k: v for k, v in group.scim.items() if k != "members"}
                )
                group.save(update_fields=["scim"])
        if self._owned(actor):
            try:
                services.delete_actor(actor)
                return
            except ValidationFailed:
                pass
        self._leave_groups(actor)

    def _set_members(self, group: Group, resource: Any) -> None:
        wanted_ids = [m.value for m in (resource.members or []) if m.value]
        actor_ids = set(
            self._users().filter(subject__in=wanted_ids).values_list("actor_id", flat=True)
        )
        current = set(group.memberships.values_list("actor_id", flat=True))
        removed, added = current - actor_ids, actor_ids - current
        if removed:
            group.memberships.filter(actor_id__in=removed).delete()
        if added:
            Membership.objects.for_account(self.account_id).bulk_create(
                [Membership(account_id=self.account_id, group=group, actor_id=a) for a in added]
            )
        if removed or added:
            publish(
                AccessChanged(
                    account_id=self.account_id,
                    reason="memberships_changed",
                    narrowed=bool(removed),
                    group_ids=frozenset({group.pk}),
                    actor_ids=frozenset(removed | added),
                )
            )


class DirectoryApplication(BaseApplication):
    def __init__(self, directory_id: uuid.UUID) -> None:
        super().__init__(PROVIDER)
        self.directory_id = directory_id
        self.directory: Directory | None = None

    def check_auth(self, request: ScimRequest) -> None:
        scheme, _, secret = (request.header("Authorization") or "").partition(" ")
        token = (
            services.use_token(secret.strip(), kind=Token.Kind.SCIM)
            if scheme.lower() == "bearer"
            else None
        )
        directory = None
        if token is not None:
            directory = (
                Directory.objects.for_account(token.account_id)
                .filter(
                    pk=self.directory_id,
                    scim_token=token,
                    kind=Directory.Kind.SCIM,
                    disabled_at__isnull=True,
                )
                .first()
            )
        if directory is None or token is None or token.account.is_disabled:
            raise UnauthorizedException(detail="A valid SCIM token of this directory is required")
        self.directory = directory

    def serve(self, request: ScimRequest) -> Any:
        try:
            with transaction.atomic():
                if self.needs_auth(request):
                    self.check_auth(request)
                if self.directory is None:  # discovery without a token: no storage needed
                    directory = Directory(pk=self.directory_id, account_id=uuid.uuid4())
                else:
                    directory = self.directory
                response = ScimHandler(self.service, DirectoryStorage(directory)).handle(request)
        except Exception as exc:
            response = self.handle_exception(request, exc)
        return self.finalize_response(request, response)


@csrf_exempt
def scim_view(request: HttpRequest, directory_id: uuid.UUID, path: str = "") -> HttpResponse:
    base_url = request.build_absolute_uri(f"/scim/v2/{directory_id}").rstrip("/")
    scim_request = ScimRequest(
        method=request.method or "GET",
        base_url=base_url,
        path=BaseApplication.split_path("/" + path.strip("/")),
        query={k: str(request.GET[k]) for k in request.GET},
        headers=dict(request.headers.items()),
        body=request.body,
    )
    response = DirectoryApplication(directory_id).serve(scim_request)
    body = b"" if response.body is None else json.dumps(response.body).encode()
    out = HttpResponse(body, status=int(response.status))
    for name, value in response.headers.items():
        out[name] = value
    return out
