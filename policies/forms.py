"""Web UI forms for resources and policies.

The filter and condition editors are plain fields (one row per protocol, one fieldset per
condition property) that these forms turn into the JSON the services store. Each piece is checked
with the same pure parsers the services use (``policies.validation`` / ``policies.evaluation``),
so an error lands next to the input that caused it; the services check everything again.
"""

from __future__ import annotations

from typing import Any, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django import forms

from policies import evaluation, validation
from policies.models import Resource

PROTOCOLS = ("tcp", "udp", "icmp")
DAYS = (
    ("M", "Monday"),
    ("T", "Tuesday"),
    ("W", "Wednesday"),
    ("R", "Thursday"),
    ("F", "Friday"),
    ("S", "Saturday"),
    ("U", "Sunday"),
)
ALL_DAY = "all day"

_ADDRESS_HELP = (
    "CIDR: <code>10.0.0.0/24</code>. IP: <code>10.0.0.5</code>. DNS: <code>app.corp.example</code> "
    "or a wildcard: <code>*</code> any characters within one label (<code>*.example.com</code> "
    "also matches <code>example.com</code>), <code>**</code> any number of labels, <code>?</code> "
    "one character. Internet: leave empty."
)


# Honest UI until the features land (issue 8 section 4); remove these notes with them.
NOT_ENFORCED_KINDS = frozenset({Resource.Kind.DNS.value, Resource.Kind.INTERNET.value})
NOT_ENFORCED_NOTE = (
    "DNS and Internet resources are not yet enforced by gateways: a policy for one grants no "
    "traffic today. Use a CIDR range or an IP address."
)
REPORTED_ONLY_PROPERTIES = frozenset({"remote_ip", "remote_ip_location_region", "provider_id"})
REPORTED_ONLY_NOTE = (
    "Applies only to clients that report it: firezone-client does (its address, the country of "
    "that address, the provider it signed in with); static WireGuard devices report none of "
    "them, and an unknown value never passes, so a policy with this condition grants static "
    "devices nothing."
)


def _kind_choices() -> list[tuple[str, str]]:
    return [
        (value, f"{label} (not yet enforced)" if value in NOT_ENFORCED_KINDS else label)
        for value, label in Resource.Kind.choices
    ]


def _split_values(raw: str) -> list[str]:
    return [v.strip() for v in raw.replace("\n", ",").split(",") if v.strip()]


class ResourceForm(forms.Form):
    name = forms.CharField(max_length=255)
    kind = forms.ChoiceField(
        label="Type",
        choices=_kind_choices,
        initial=Resource.Kind.CIDR.value,
        help_text=NOT_ENFORCED_NOTE,
    )
    address = forms.CharField(max_length=253, required=False, help_text=_ADDRESS_HELP)
    address_description = forms.CharField(
        label="Address description",
        max_length=512,
        required=False,
        help_text="Shown to users in their client, e.g. a URL to open.",
    )
    site = forms.ChoiceField()
    ip_stack = forms.ChoiceField(
        label="IP stack (DNS resources)",
        choices=Resource.IpStack.choices,
        initial=Resource.IpStack.DUAL.value,
    )
    filter_tcp = forms.BooleanField(label="TCP", required=False)
    ports_tcp = forms.CharField(
        label="TCP ports",
        required=False,
        widget=forms.TextInput(attrs={"placeholder": "all, or 443, 8000-8100"}),
    )
    filter_udp = forms.BooleanField(label="UDP", required=False)
    ports_udp = forms.CharField(
        label="UDP ports",
        required=False,
        widget=forms.TextInput(attrs={"placeholder": "all, or 53"}),
    )
    filter_icmp = forms.BooleanField(label="ICMP", required=False)

    def __init__(self, *args: Any, sites: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["site"]).choices = [("", "Choose a site"), *sites]

    @staticmethod
    def initial_for(resource: Resource) -> dict[str, Any]:
        initial: dict[str, Any] = {
            "name": resource.name,
            "kind": resource.kind,
            "address": resource.address,
            "address_description": resource.address_description,
            "site": str(resource.site_id),
            "ip_stack": resource.ip_stack,
        }
        for item in resource.filters or []:
            proto = item.get("protocol")
            if proto in PROTOCOLS:
                initial[f"filter_{proto}"] = True
                if proto != "icmp":
                    initial[f"ports_{proto}"] = ", ".join(item.get("ports") or [])
        return initial

    def filters(self) -> list[dict[str, Any]]:
        """The filter rows as the service's JSON ([] = all traffic)."""
        out: list[dict[str, Any]] = []
        for proto in PROTOCOLS:
            if self.cleaned_data.get(f"filter_{proto}"):
                item: dict[str, Any] = {"protocol": proto}
                if proto != "icmp":
                    ports = _split_values(self.cleaned_data.get(f"ports_{proto}") or "")
                    item["ports"] = [] if ports in ([], ["all"]) else ports
                out.append(item)
        return out

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        for proto in ("tcp", "udp"):
            if (data.get(f"ports_{proto}") or "").strip() and not data.get(f"filter_{proto}"):
                # Ports typed without ticking the protocol: the admin meant to filter it.
                data[f"filter_{proto}"] = True
        if self.errors:
            return data
        rows = self.filters()
        try:
            validation.parse_filters(rows)
        except validation.InvalidInput as exc:
            index = int(exc.field.split("[", 2)[1].split("]", 1)[0]) if "[" in exc.field else -1
            proto = rows[index]["protocol"] if 0 <= index < len(rows) else "tcp"
            self.add_error(f"ports_{proto}" if proto != "icmp" else "filter_icmp", str(exc))
        return data


class PolicyForm(forms.Form):
    reported_only_note = REPORTED_ONLY_NOTE
    group = forms.CharField(
        max_length=255,
        help_text="Group name.",
        widget=forms.TextInput(attrs={"list": "group-options", "autocomplete": "off"}),
    )
    resource = forms.CharField(
        max_length=255,
        help_text="Resource name.",
        widget=forms.TextInput(attrs={"list": "resource-options", "autocomplete": "off"}),
    )
    description = forms.CharField(
        required=False, max_length=1024, widget=forms.Textarea(attrs={"rows": 2})
    )

    ip_operator = forms.ChoiceField(
        label="Remote IP",
        required=False,
        choices=[("", "any"), ("is_in_cidr", "is in"), ("is_not_in_cidr", "is not in")],
    )
    ip_values = forms.CharField(
        label="CIDR ranges",
        required=False,
        widget=forms.TextInput(attrs={"placeholder": "10.0.0.0/8, 2001:db8::/32"}),
    )
    country_operator = forms.ChoiceField(
        label="Country",
        required=False,
        choices=[("", "any"), ("is_in", "is in"), ("is_not_in", "is not in")],
    )
    country_values = forms.CharField(
        label="Country codes",
        required=False,
        widget=forms.TextInput(attrs={"placeholder": "DE, FR"}),
    )
    provider_operator = forms.ChoiceField(
        label="Auth provider",
        required=False,
        choices=[("", "any"), ("is_in", "is one of"), ("is_not_in", "is none of")],
    )
    provider_values = forms.MultipleChoiceField(
        label="Providers", required=False, widget=forms.CheckboxSelectMultiple
    )
    time_enabled = forms.BooleanField(label="Only during these times", required=False)
    time_zone = forms.CharField(
        label="Time zone",
        required=False,
        initial="UTC",
        widget=forms.TextInput(attrs={"list": "time-zones"}),
    )
    verified = forms.BooleanField(label="Only verified clients", required=False)

    def __init__(self, *args: Any, providers: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["provider_values"]).choices = providers
        for letter, label in DAYS:
            self.fields[f"time_{letter}"] = forms.CharField(
                label=label,
                required=False,
                widget=forms.TextInput(attrs={"placeholder": "09:00-17:00 or all day"}),
            )

    def day_fields(self) -> list[forms.BoundField]:
        return [self[f"time_{letter}"] for letter, _ in DAYS]

    # --- stored JSON <-> fields ----------------------------------------------------------------

    @staticmethod
    def initial_conditions(conditions: list[dict[str, Any]]) -> dict[str, Any]:
        initial: dict[str, Any] = {}
        for cond in conditions or []:
            prop, op, values = cond["property"], cond["operator"], list(cond["values"])
            if prop == "remote_ip":
                initial.update(ip_operator=op, ip_values=", ".join(values))
            elif prop == "remote_ip_location_region":
                initial.update(country_operator=op, country_values=", ".join(values))
            elif prop == "provider_id":
                initial.update(provider_operator=op, provider_values=values)
            elif prop == "client_verified":
                initial["verified"] = True
            elif prop == "current_utc_datetime":
                initial["time_enabled"] = True
                days: dict[str, list[str]] = {}
                for value in values:
                    letters, ranges, zone = value.split("/", 2)
                    initial["time_zone"] = zone
                    for letter in letters:
                        days.setdefault(letter, []).append(ALL_DAY if ranges == "true" else ranges)
                for letter, parts in days.items():
                    initial[f"time_{letter}"] = ALL_DAY if ALL_DAY in parts else ", ".join(parts)
        return initial

    def conditions(self) -> list[dict[str, Any]]:
        data = self.cleaned_data
        out: list[dict[str, Any]] = []
        if data.get("ip_operator"):
            out.append(
                {
                    "property": "remote_ip",
                    "operator": data["ip_operator"],
                    "values": _split_values(data.get("ip_values") or ""),
                }
            )
        if data.get("country_operator"):
            out.append(
                {
                    "property": "remote_ip_location_region",
                    "operator": data["country_operator"],
                    "values": _split_values(data.get("country_values") or ""),
                }
            )
        if data.get("provider_operator"):
            out.append(
                {
                    "property": "provider_id",
                    "operator": data["provider_operator"],
                    "values": list(data.get("provider_values") or []),
                }
            )
        if data.get("time_enabled"):
            out.append(
                {
                    "property": "current_utc_datetime",
                    "operator": "is_in_day_of_week_time_ranges",
                    "values": self._windows(),
                }
            )
        if data.get("verified"):
            out.append({"property": "client_verified", "operator": "is", "values": ["true"]})
        return out

    def _windows(self) -> list[str]:
        """Days with the same ranges share one value: ``MTWRF/09:00-17:00/Europe/Berlin``."""
        zone = (self.cleaned_data.get("time_zone") or "").strip()
        by_ranges: dict[str, str] = {}
        for letter, _ in DAYS:
            ranges = self._day_ranges(letter)
            if ranges:
                by_ranges[ranges] = by_ranges.get(ranges, "") + letter
        return [f"{letters}/{ranges}/{zone}" for ranges, letters in by_ranges.items()]

    def _day_ranges(self, letter: str) -> str:
        raw = (self.cleaned_data.get(f"time_{letter}") or "").strip()
        if raw.lower() in (ALL_DAY, "true", "all", "24h"):
            return "true"
        return ",".join(_split_values(raw))

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        pairs = (
            ("ip_operator", "ip_values"),
            ("country_operator", "country_values"),
            ("provider_operator", "provider_values"),
        )
        for op_field, values_field in pairs:
            if data.get(op_field) and not data.get(values_field):
                self.add_error(
                    values_field, "Give at least one value, or set the condition to any."
                )
        if data.get("time_enabled"):
            self._clean_time()
        if self.errors:
            return data
        targets = {
            "remote_ip": "ip_values",
            "remote_ip_location_region": "country_values",
            "provider_id": "provider_values",
            "current_utc_datetime": "time_enabled",
            "client_verified": "verified",
        }
        for index, cond in enumerate(self.conditions()):
            try:
                evaluation.parse_condition(cond, index)
            except validation.InvalidInput as exc:
                self.add_error(targets[cond["property"]], str(exc))
        return data

    def _clean_time(self) -> None:
        zone = (self.cleaned_data.get("time_zone") or "").strip()
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            self.add_error(
                "time_zone", f"Unknown time zone {zone!r}; use a name like Europe/Berlin."
            )
            return
        any_day = False
        for letter, _ in DAYS:
            ranges = self._day_ranges(letter)
            if not ranges:
                continue
            any_day = True
            cond = {
                "property": "current_utc_datetime",
                "operator": "is_in_day_of_week_time_ranges",
                "values": [f"{letter}/{ranges}/{zone}"],
            }
            try:
                evaluation.parse_condition(cond)
            except validation.InvalidInput as exc:
                message = str(exc).split(": ", 2)[-1]
                self.add_error(f"time_{letter}", message)
        if not any_day:
            self.add_error("time_enabled", "Give the hours for at least one day.")
