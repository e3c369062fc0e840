"""`bitbd serve` as a real process with its embedded PostgreSQL and Redis, as a new user runs it."""

from __future__ import annotations

import json
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bitbd.embedded.datadir import DataDir
from bitbd.embedded.redis import free_port
from tests.support.daemon import Daemon, bitbd, clean_env, gone


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Daemon]:
    daemon = Daemon(tmp_path / "data", tmp_path).start()
    yield daemon
    if daemon.proc is not None and daemon.proc.poll() is None:
        daemon.stop()


def test_first_start_restart_and_persistence(running: Daemon) -> None:
    token = running.token()
    assert token.startswith("adm_")
    assert stat.S_IMODE((running.data_dir / "admin_token").stat().st_mode) == 0o600
    first_output = running.output()
    assert first_output.count(token) == 1, "the admin token is printed once, at first start"
    assert "bitbd listening" in first_output and f"url={running.url}" in first_output
    assert f"data_dir={running.data_dir}" in first_output

    status, tenant = running.request("POST", "/v1/admin/tenants", {"name": "acme"}, token)
    assert status == 201
    status, key = running.request("POST", f"/v1/admin/tenants/{tenant['id']}/keys", {"kind": "secret"}, token)
    assert status == 201

    children = running.children()
    assert {p.name() for p in children} >= {"postgres", "redis-server"}
    assert running.stop() == 0
    assert gone(children), "embedded services must stop with the daemon"

    again = Daemon(running.data_dir, running.cwd).start()
    try:
        assert token not in again.output(), "the admin token is not printed again"
        status, body = again.get("/v1/tenant", token=key["key"])
        assert status == 200 and body["tenant"]["id"] == tenant["id"]
    finally:
        again.stop()


def test_second_serve_on_the_same_data_dir_fails_at_once(running: Daemon) -> None:
    started = time.monotonic()
    result = bitbd("serve", "--data-dir", str(running.data_dir), "--port", "0", cwd=running.cwd)
    assert result.returncode == 1
    assert time.monotonic() - started < 10
    assert (
        f"data dir {running.data_dir} is in use by bitbd serve (pid {running.proc.pid if running.proc else 0})"
        in result.stderr
    )
    assert running.get("/readyz")[0] == 200, "the first server is unharmed"


def test_kill_9_leaves_no_orphans_and_the_next_start_works(running: Daemon) -> None:
    token = running.token()
    running.request("POST", "/v1/admin/tenants", {"name": "survivor"}, token)
    children = running.children()
    assert running.stop(signal.SIGKILL) == -signal.SIGKILL
    assert gone(children), "postgres and redis must not outlive a SIGKILLed daemon"
    again = Daemon(running.data_dir, running.cwd).start()
    try:
        status, body = again.get("/v1/admin/tenants", token)
        assert status == 200
        assert [t["name"] for t in body["tenants"]] == ["survivor"]
    finally:
        again.stop()


def test_cli_works_beside_a_running_server(running: Daemon) -> None:
    data = str(running.data_dir)
    created = bitbd("tenant", "create", "beta", "--data-dir", data, cwd=running.cwd)
    assert created.returncode == 0, created.stderr
    key = bitbd("key", "create", "--tenant", "beta", "--data-dir", data, cwd=running.cwd)
    assert key.returncode == 0, key.stderr
    raw = key.stdout.strip()
    assert raw.startswith("sk_")
    status, body = running.get("/v1/tenant", token=raw)
    assert status == 200 and body["tenant"]["name"] == "beta"
    public = bitbd("key", "create", "--tenant", "beta", "--public", "--data-dir", data, cwd=running.cwd)
    assert public.returncode == 1 and "needs at least one allowed origin" in public.stderr
    listing = bitbd("tenant", "list", "--data-dir", data, cwd=running.cwd)
    assert "beta" in listing.stdout


def test_cli_alone_starts_and_stops_its_own_database(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert bitbd("tenant", "create", "solo", "--data-dir", str(data), cwd=tmp_path).returncode == 0
    result = bitbd(
        "key",
        "create",
        "--tenant",
        "solo",
        "--public",
        "--origin",
        "https://solo.example",
        "--trial",
        "--expires",
        "14d",
        "--quota",
        "200",
        "--json",
        "--data-dir",
        str(data),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert '"quota": 200' in result.stdout and '"trial": true' in result.stdout
    listing = bitbd("key", "list", "--tenant", "solo", "--data-dir", str(data), cwd=tmp_path)
    assert "public trial" in listing.stdout and "0/200" in listing.stdout
    assert not (data / "services.json").exists(), "the CLI stopped the PostgreSQL it started"


def test_broken_config_stops_start_up_with_key_and_file(tmp_path: Path) -> None:
    (tmp_path / "bitbd.toml").write_text("[server]\nport = 8740\nworkers = 4\n")
    result = bitbd("serve", "--data-dir", str(tmp_path / "data"), cwd=tmp_path)
    assert result.returncode == 2
    assert f"{tmp_path / 'bitbd.toml'}: unknown key 'server.workers'" in result.stderr
    assert not (tmp_path / "data" / "postgres").exists(), "nothing starts on a bad config"


def test_busy_port_is_a_clear_error_and_leaves_nothing_running(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        daemon = Daemon(tmp_path / "data", tmp_path, port=port).start(wait=False)
        assert daemon.proc is not None
        code = daemon.proc.wait(90)
    assert code == 2, "a port in use is a configuration problem, like a bad bitbd.toml"
    assert f"cannot listen on 127.0.0.1:{port}" in daemon.output()
    assert not (tmp_path / "data" / "services.json").exists()


def test_secrets_never_reach_the_log(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path / "data", tmp_path, "--verbose").start()
    try:
        token = daemon.token()
        _, tenant = daemon.request("POST", "/v1/admin/tenants", {"name": "acme"}, token)
        _, key = daemon.request("POST", f"/v1/admin/tenants/{tenant['id']}/keys", {"kind": "secret"}, token)
        daemon.get("/v1/tenant", token=key["key"])
        daemon.get("/v1/tenant", token=key["key"][:-2] + "xx")
        daemon.get("/v1/admin/tenants", token="adm_wrong_guess")
    finally:
        daemon.stop()
    log = daemon.output().replace(token, "", 1)  # the one deliberate print at first start
    redis_password = (daemon.data_dir / "redis" / "password").read_text().strip()
    for secret in (token, key["key"], key["key"][:-2] + "xx", "adm_wrong_guess", redis_password):
        assert secret not in log
    assert "level=debug" in log, "the verbose run did log"


def test_start_says_one_line_and_a_clean_stop_withdraws_server_json(tmp_path: Path) -> None:
    """At the default log level a first start prints exactly the line the README promises, then the admin token;
    after SIGTERM, server.json (where `bitbd ask` finds the server) is gone."""
    data, port = tmp_path / "data", free_port()
    with open(tmp_path / "out", "w") as out, open(tmp_path / "err", "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bitbd", "serve", "--data-dir", str(data), "--port", str(port)],
            stdout=out,
            stderr=err,
            cwd=tmp_path,
            env=clean_env(),
        )
    try:
        deadline = time.monotonic() + 90
        while not (data / "server.json").exists() or "Admin token" not in (tmp_path / "out").read_text():
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "err").read_text()
            time.sleep(0.1)
        assert json.loads((data / "server.json").read_text())["url"] == f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    lines = (tmp_path / "err").read_text().splitlines()
    assert len(lines) == 2, lines  # at start, and "bitbd stopping" at the stop
    assert 'msg="bitbd listening"' in lines[0] and f"url=http://127.0.0.1:{port}" in lines[0]
    assert 'msg="bitbd stopping"' in lines[1]
    assert "dropped vector index" not in (tmp_path / "err").read_text()
    assert (tmp_path / "out").read_text().startswith("Admin token (shown once;")
    assert not (data / "server.json").exists(), "a clean stop withdraws server.json"


def test_stale_server_json_is_treated_as_absent(tmp_path: Path) -> None:
    data = DataDir(tmp_path / "data")
    data.prepare()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (data.path / "server.json").write_text(json.dumps({"url": "http://127.0.0.1:9", "pid": dead.pid}))
    (data.path / "bitbd.lock").write_text(json.dumps({"pid": dead.pid, "role": "serve"}))
    assert data.server_url() is None


def test_commands_that_only_read_never_create_a_data_dir(tmp_path: Path) -> None:
    """`bitbd tenant list` with no data dir made an empty database in the default one and printed an empty table."""
    env = clean_env(XDG_DATA_HOME=str(tmp_path / "xdg"), HOME=str(tmp_path / "home"))
    default = tmp_path / "xdg" / "bitbd"
    for argv in (
        ["tenant", "list"],
        ["tenant", "create", "acme"],
        ["key", "list", "--tenant", "acme"],
        ["tenant", "delete", "acme", "--yes"],
        ["ingest", "--tenant", "acme", "http://127.0.0.1:9/"],
        ["reembed", "--tenant", "acme"],
        ["worker"],
        ["migrate"],
        ["admin-token"],
    ):
        result = bitbd(*argv, cwd=tmp_path, env=env)
        assert result.returncode == 2, (argv, result.stdout, result.stderr)
        assert f"no bitbd database in {default} (the default data dir)" in result.stderr, result.stderr
        assert "--data-dir DIR or BITBD_DATA_DIR=DIR" in result.stderr
        assert not default.exists(), argv
    chosen = tmp_path / "typo"
    for env_or_flag in ({"BITBD_DATA_DIR": str(chosen)}, {}):
        flags = [] if env_or_flag else ["--data-dir", str(chosen)]
        result = bitbd("tenant", "list", *flags, cwd=tmp_path, env={**env, **env_or_flag})
        assert result.returncode == 2 and f"no bitbd database in {chosen} (the data dir chosen)" in result.stderr
        assert not chosen.exists()
    made = bitbd("tenant", "create", "acme", "--data-dir", str(chosen), cwd=tmp_path, env=env)
    assert made.returncode == 0 and f"creating a new data dir at {chosen}" in made.stderr, made.stderr
    listed = bitbd("tenant", "list", cwd=tmp_path, env={**env, "BITBD_DATA_DIR": str(chosen)})
    assert listed.returncode == 0 and "acme" in listed.stdout, listed.stderr
