"""Resource address validation: what an admin may enter for cidr, ip, dns and internet resources."""

from __future__ import annotations

import pytest

from policies.validation import InvalidInput, normalize_resource_address


@pytest.mark.parametrize(
    ("kind", "address", "expected"),
    [
        ("cidr", "10.0.0.0/24", "10.0.0.0/24"),
        ("cidr", "10.0.0.5/24", "10.0.0.0/24"),
        ("cidr", " 192.168.1.0/24 ", "192.168.1.0/24"),
        ("cidr", "10.0.0.7", "10.0.0.7/32"),
        ("cidr", "2001:DB8::1/64", "2001:db8::/64"),
        ("cidr", "100.63.255.0/24", "100.63.255.0/24"),  # just below the tunnel range
        ("cidr", "100.128.0.0/16", "100.128.0.0/16"),  # just above the DNS proxy range
        ("cidr", "fd00:2021:1112::/48", "fd00:2021:1112::/48"),
        ("cidr", "0.0.0.0/1", None),  # overlaps the tunnel range, see refusals
        ("ip", "10.0.0.1", "10.0.0.1"),
        ("ip", "10.0.0.1/32", "10.0.0.1"),
        ("ip", "2001:0db8:0000::0001", "2001:db8::1"),
        ("ip", "2001:db8::1/128", "2001:db8::1"),
        ("dns", "Example.COM", "example.com"),
        ("dns", "gitlab.example.com.", "gitlab.example.com"),
        ("dns", "*.example.com", "*.example.com"),
        ("dns", "**.corp.example.com", "**.corp.example.com"),
        ("dns", "web-?.example.com", "web-?.example.com"),
        ("dns", "web*.internal.example", "web*.internal.example"),
        ("dns", "a.**.b.example.com", "a.**.b.example.com"),
        ("dns", "xn--mnchen-3ya.de", "xn--mnchen-3ya.de"),
        ("dns", "host.corp", "host.corp"),
        ("internet", "", ""),
        ("internet", "  ", ""),
    ],
)
def test_it_accepts_and_normalizes_valid_addresses(
    kind: str, address: str, expected: str | None
) -> None:
    if expected is None:
        with pytest.raises(InvalidInput):
            normalize_resource_address(kind, address)
    else:
        assert normalize_resource_address(kind, address) == expected


@pytest.mark.parametrize(
    ("kind", "address", "fragment"),
    [
        ("cidr", "0.0.0.0/0", "internet resource"),
        ("cidr", "::/0", "internet resource"),
        ("cidr", "1.2.3.4/0", "internet resource"),
        ("ip", "0.0.0.0", "unspecified"),
        ("ip", "::", "unspecified"),
        ("ip", "127.0.0.1", "loopback"),
        ("cidr", "127.0.0.0/8", "loopback"),
        ("cidr", "126.0.0.0/7", "loopback"),
        ("ip", "::1", "loopback"),
        ("cidr", "::/127", "loopback"),
        ("ip", "::ffff:127.0.0.1", "loopback"),
        # client tunnel ranges, inside and overlapping
        ("ip", "100.64.0.1", "tunnel"),
        ("cidr", "100.64.0.0/11", "tunnel"),
        ("cidr", "100.64.0.0/10", "tunnel"),
        ("cidr", "100.0.0.0/8", "tunnel"),
        ("cidr", "100.95.255.255/32", "tunnel"),
        ("cidr", "0.0.0.0/1", "tunnel"),
        ("ip", "fd00:2021:1111::5", "tunnel"),
        ("cidr", "fd00::/8", "tunnel"),
        ("cidr", "fd00:2021:1111::/48", "tunnel"),
        ("ip", "::ffff:100.64.0.1", "tunnel"),
        # DNS proxy ranges
        ("ip", "100.96.0.1", "DNS proxy"),
        ("cidr", "100.127.0.0/16", "DNS proxy"),
        ("ip", "fd00:2021:1111:8000::1", "DNS proxy"),
        ("cidr", "fd00:2021:1111:8000::/112", "DNS proxy"),
        # ports
        ("ip", "10.0.0.1:80", "port"),
        ("cidr", "10.0.0.0:80/24", "port"),
        ("ip", "[::1]:80", "port"),
        ("ip", "[2001:db8::1]:443", "port"),
        ("dns", "example.com:443", "port"),
        # malformed
        ("ip", "10.0.0.0/24", "single IP"),
        ("ip", "10.0.0.256", "not a valid IP"),
        ("ip", "example.com", "not a valid IP"),
        ("cidr", "10.0.0.0/33", "not a valid CIDR"),
        ("cidr", "10.0.0.0/", "not a valid CIDR"),
        ("ip", "fe80::1%eth0", "Zone id"),
        ("ip", "224.0.0.1", "multicast"),
        ("cidr", "ff00::/8", "multicast"),
        ("ip", "", "required"),
        ("cidr", "   ", "required"),
        ("internet", "0.0.0.0/0", "no address"),
        ("unknown", "10.0.0.1", "Unknown resource type"),
    ],
)
def test_it_refuses_bad_ip_addresses_with_a_clear_message(
    kind: str, address: str, fragment: str
) -> None:
    with pytest.raises(InvalidInput) as info:
        normalize_resource_address(kind, address)
    assert fragment.lower() in str(info.value).lower()
    assert info.value.field == ("type" if kind == "unknown" else "address")
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("address", "fragment"),
    [
        ("1.2.3.4", "IP address"),
        ("2001:db8::1", "IP address"),
        ("10.0.0.0/24", "IP address"),
        ("localhost", "two labels"),
        ("*", "two labels"),
        ("**", "two labels"),
        ("example.*", "top-level domain"),
        ("example.c?m", "top-level domain"),
        ("example.**", "top-level domain"),
        ("*.com", "top-level domain"),
        ("**.com", "top-level domain"),
        ("?.com", "top-level domain"),
        ("foo.ex*ample.com", "top-level domain"),
        ("ex*ample.example.com", None),  # allowed: the wildcard is left of the second level
        ("a.b.123", "all digits"),
        ("a..example.com", "empty"),
        (".example.com", "empty"),
        ("example.com..", "empty"),
        ("a" * 64 + ".example.com", "63"),
        (".".join(["a" * 60] * 5) + ".com", "253"),
        ("under_score.example.com", "'_'"),
        ("spa ce.example.com", "' '"),
        ("foo**.example.com", "whole label"),
        ("***.example.com", "whole label"),
        ("-web.example.com", "hyphen"),
        ("web-.example.com", "hyphen"),
        ("münchen.de", "xn--"),
        ("", "required"),
    ],
)
def test_it_refuses_bad_dns_names(address: str, fragment: str | None) -> None:
    if fragment is None:
        assert normalize_resource_address("dns", address) == address
        return
    with pytest.raises(InvalidInput) as info:
        normalize_resource_address("dns", address)
    assert fragment.lower() in str(info.value).lower()
    assert info.value.field == "address"


def test_it_accepts_names_at_the_length_limits() -> None:
    label63 = "a" * 63
    assert normalize_resource_address("dns", f"{label63}.example.com") == f"{label63}.example.com"
    name253 = ".".join(["a" * 61] * 4) + ".abcde"
    assert len(name253) == 253
    assert normalize_resource_address("dns", name253) == name253
    assert normalize_resource_address("dns", name253 + ".") == name253
    with pytest.raises(InvalidInput):
        normalize_resource_address("dns", name253 + "a")


def test_it_refuses_non_text_addresses() -> None:
    with pytest.raises(InvalidInput):
        normalize_resource_address("ip", 167772161)  # type: ignore[arg-type]
