"""The SSRF guard's address rules."""

from __future__ import annotations

import pytest

from bitbd.ingest.extract import normalize_url
from bitbd.ingest.guard import forbidden, host_refusal


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "::1",
        "fe80::1",
        "fd00::1",
        "0.0.0.0",
        "::ffff:127.0.0.1",
        "100.64.0.1",
        "224.0.0.1",
    ],
)
def test_internal_addresses_are_forbidden(address: str) -> None:
    assert forbidden(address)


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:4700:4700::1111", "8.8.8.8"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert not forbidden(address)


def test_literal_hosts_and_the_escape_hatch() -> None:
    assert host_refusal("[::1]", allow_private=False)
    assert host_refusal("::1", allow_private=True) is None
    assert host_refusal("docs.example", allow_private=False) is None  # names go through the resolver


def test_normalize_url() -> None:
    assert normalize_url("HTTP://Docs.Example:80/a?b=1#frag") == "http://docs.example/a?b=1"
    assert normalize_url("https://[::1]:8443") == "https://[::1]:8443/"
