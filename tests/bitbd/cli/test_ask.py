"""`bitbd ask`, `bitbd search` and `bitbd gaps` against a real `bitbd serve` process, found through the data dir."""

from __future__ import annotations

from pathlib import Path

from bitbd.embedded.redis import free_port
from tests.support.daemon import Daemon, bitbd, clean_env, tenant_with_folder


def test_ask_and_search_a_running_server(tmp_path: Path) -> None:
    data = tmp_path / "data"
    daemon = Daemon(data, tmp_path).start()
    try:
        d = str(data)
        tenant_with_folder(
            daemon,
            tmp_path,
            {
                "returns.md": "# Returns\n\nYou can return any item within 30 days of delivery for a full refund. "
                "Refunds are paid within five working days.\n",
                "shipping.md": "# Shipping\n\nWe ship every order within two business days. Express delivery "
                "arrives the next working day.\n",
            },
        )

        asked = bitbd("ask", "--tenant", "acme", "--data-dir", d, "How long do I have to return an item?", cwd=tmp_path)
        assert asked.returncode == 0 and "; by extractive;" in asked.stderr, asked.stderr
        assert "within 30 days of delivery" in asked.stdout and "[1]" in asked.stdout
        assert "[1] Returns — upload:returns.md" in asked.stdout, asked.stdout
        conversation = asked.stderr.split("conversation ")[1].split(";")[0]
        follow = bitbd(
            "ask",
            "--tenant",
            "acme",
            "--data-dir",
            d,
            "--conversation",
            conversation,
            "And how fast is express delivery?",
            cwd=tmp_path,
        )
        assert follow.returncode == 0 and "next working day" in follow.stdout, follow.stdout + follow.stderr

        found = bitbd("search", "--tenant", "acme", "--data-dir", d, "express delivery", "-k", "1", cwd=tmp_path)
        assert found.returncode == 0, found.stderr
        assert found.stdout.startswith("1. Shipping — upload:shipping.md") and "Express" in found.stdout

        status, body = daemon.request("POST", "/v1/admin/tenants/acme/keys", {"kind": "secret"}, daemon.token())
        assert status == 201, body
        with_key = bitbd("search", "--key", body["key"], "--data-dir", d, "refund", "--json", cwd=tmp_path)
        assert '"url": "upload:' in with_key.stdout, with_key.stdout + with_key.stderr

        for question in ("Do you sell gift cards?", "How much is a gift card?"):  # nothing in the documents
            refused = bitbd("ask", "--tenant", "acme", "--data-dir", d, question, cwd=tmp_path)
            assert refused.returncode == 0 and "I don't know" in refused.stdout, refused.stdout
        gaps = bitbd("gaps", "--tenant", "acme", "--data-dir", d, cwd=tmp_path)
        assert gaps.returncode == 0, gaps.stderr
        assert gaps.stdout.startswith("1. 2 question(s), ") and "2 refused" in gaps.stdout, gaps.stdout
        assert "   - Do you sell gift cards?" in gaps.stdout and "   closest: " in gaps.stdout, gaps.stdout
        too_short = bitbd("gaps", "--tenant", "acme", "--data-dir", d, "--days", "0", cwd=tmp_path)
        assert too_short.returncode == 1 and "days" in too_short.stderr, too_short.stderr

        wrong = bitbd("ask", "--key", "sk_not_a_real_key", "--data-dir", d, "hello", cwd=tmp_path)
        assert wrong.returncode == 1 and "unknown API key" in wrong.stderr
        no_tenant = bitbd("ask", "--data-dir", d, "hello", cwd=tmp_path)
        assert no_tenant.returncode == 2 and "--tenant" in no_tenant.stderr
    finally:
        daemon.stop()
    nobody = bitbd(
        "search",
        "--tenant",
        "acme",
        "--url",
        f"http://127.0.0.1:{free_port()}",
        "x",
        cwd=tmp_path,
        env=clean_env(BITBD_ADMIN_TOKEN="adm_x_long_enough_for_an_admin_token"),
    )
    assert nobody.returncode == 1 and "no bitbd server answers" in nobody.stderr
