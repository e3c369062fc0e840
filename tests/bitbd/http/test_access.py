"""The access log redacts secrets a client put in the URL."""

from __future__ import annotations

from bitbd.http.access import redact_query


def test_secret_parameters_and_tokens_are_redacted_public_keys_kept() -> None:
    assert redact_query("key=sk_abcdef123456&x=1") == "key=%5Bredacted%5D&x=1"
    assert redact_query("key=pk_abcdef123456") == "key=pk_abcdef123456", "public keys are public"
    assert redact_query("q=adm_secret_token_here") == "q=adm_[redacted]"
    assert redact_query("tenant=acme&limit=5") == "tenant=acme&limit=5"
