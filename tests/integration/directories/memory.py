"""An in-memory directory: the engine's adapter contract without HTTP (the HTTP adapters are
tested against the vendor fakes)."""

from __future__ import annotations

from dataclasses import dataclass, field

from accounts.directories.engine import Page, ProviderError, RemoteGroup, RemoteUser


@dataclass
class MemoryDirectory:
    users: dict[str, RemoteUser] = field(default_factory=dict)
    groups: dict[str, RemoteGroup] = field(default_factory=dict)
    members: dict[str, list[str]] = field(default_factory=dict)
    page_size: int = 2
    issuer: str = "https://idp.example.test"
    # (kind, call number) -> error: the n-th call of that kind fails once
    fail: dict[tuple[str, int], ProviderError] = field(default_factory=dict)
    calls: list[tuple[str, str | None]] = field(default_factory=list)

    def user(self, uid: str, email: str, name: str = "", active: bool = True) -> None:
        self.users[uid] = RemoteUser(id=uid, email=email, name=name or uid, active=active)

    def group(self, gid: str, name: str, *members: str) -> None:
        self.groups[gid] = RemoteGroup(id=gid, name=name)
        self.members[gid] = list(members)

    def _page(self, kind: str, items: list[object], token: str | None) -> tuple[list, str | None]:  # type: ignore[type-arg]
        self.calls.append((kind, token))
        n = sum(1 for k, _ in self.calls if k == kind)
        error = self.fail.pop((kind, n), None)
        if error is not None:
            raise error
        start = int(token or 0)
        end = start + self.page_size
        return items[start:end], (str(end) if end < len(items) else None)

    def users_page(self, token: str | None) -> Page[RemoteUser]:
        items, nxt = self._page("users", sorted(self.users.values(), key=lambda u: u.id), token)
        return Page(items, nxt)

    def groups_page(self, token: str | None) -> Page[RemoteGroup]:
        items, nxt = self._page("groups", sorted(self.groups.values(), key=lambda g: g.id), token)
        return Page(items, nxt)

    def members_page(self, group_id: str, token: str | None) -> Page[str]:
        items, nxt = self._page("members", list(self.members.get(group_id, [])), token)
        return Page(items, nxt)
