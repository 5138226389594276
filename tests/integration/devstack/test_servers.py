"""The devstack servers are the real thing: each test talks to one through its ordinary client.

Each test starts its own servers (``fresh_*`` fixtures) instead of the session servers of
``tests/conftest.py``, because these tests restart and kill them.
"""

from __future__ import annotations

import base64
import os
import socket
import stat
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import hvac
import nats
import pytest

from libs.devstack.servers import (
    DockerRegistry,
    NatsServer,
    OpenBaoServer,
    PostgresServer,
    ServerError,
    ServerStartError,
    free_port,
)
from libs.devstack.servers.plumbing import descendants as _descendants
from libs.devstack.servers.plumbing import pid_alive as _pid_alive


@pytest.fixture(autouse=True, scope="module")
def _no_leftover_processes() -> Iterator[None]:
    """Every process this module starts is gone at its end (session servers started before are not ours)."""
    before = set(_descendants(os.getpid()))
    yield
    leftovers = [pid for pid in _descendants(os.getpid()) if pid not in before and _pid_alive(pid)]
    assert leftovers == [], f"server processes left running: {leftovers}"


def _http(method: str, url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str]]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers)


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


# -- NATS ------------------------------------------------------------------------------------------


@pytest.fixture
def fresh_nats(tmp_path: Path) -> Iterator[NatsServer]:
    with NatsServer(tmp_path / "nats") as server:
        yield server


async def _publish(url: str, subject: str, payload: bytes, **options: str) -> int:
    nc = await nats.connect(url, allow_reconnect=False, **options)
    try:
        js = nc.jetstream()
        await js.add_stream(name="EVENTS", subjects=["events.>"])
        ack = await js.publish(subject, payload)
        assert ack.stream == "EVENTS"
        return ack.seq
    finally:
        await nc.close()


async def _stream_messages(url: str) -> int:
    nc = await nats.connect(url, allow_reconnect=False)
    try:
        info = await nc.jetstream().stream_info("EVENTS")
        return info.state.messages
    finally:
        await nc.close()


async def test_nats_jetstream_publish_is_acked_and_survives_restart_and_crash(
    fresh_nats: NatsServer,
) -> None:
    assert fresh_nats.url == f"nats://127.0.0.1:{fresh_nats.port}"
    assert await _publish(fresh_nats.url, "events.one", b"hello") == 1

    pid = fresh_nats.pid
    fresh_nats.restart()
    assert fresh_nats.pid not in (None, pid)
    assert await _stream_messages(fresh_nats.url) == 1

    fresh_nats.kill()
    assert not fresh_nats.is_running()
    assert fresh_nats.pid is None
    fresh_nats.start()
    assert await _stream_messages(fresh_nats.url) == 1


async def test_nats_config_extra_is_applied(tmp_path: Path) -> None:
    extra = 'authorization { users = [ { user: "svc", password: "s3cret" } ] }'
    with NatsServer(tmp_path / "nats", config_extra=extra) as server:
        assert await _publish(server.url, "events.x", b"x", user="svc", password="s3cret") == 1
        with pytest.raises(nats.errors.Error):
            await nats.connect(server.url, allow_reconnect=False, connect_timeout=2)


# -- Postgres --------------------------------------------------------------------------------------


@pytest.fixture
def fresh_postgres(tmp_path: Path) -> Iterator[PostgresServer]:
    with PostgresServer(tmp_path / "pg") as server:
        yield server


async def _fetchval(dsn: str, query: str) -> object:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(query)
    finally:
        await conn.close()


async def test_postgres_is_postgres_18_and_data_survives_restart(fresh_postgres: PostgresServer) -> None:
    assert fresh_postgres.dsn == f"postgresql://postgres@127.0.0.1:{fresh_postgres.port}/postgres"
    version = await _fetchval(fresh_postgres.dsn, "select version()")
    assert isinstance(version, str)
    assert version.startswith("PostgreSQL 18.")

    conn = await asyncpg.connect(fresh_postgres.dsn)
    try:
        await conn.execute("create table notes (body text)")
        await conn.execute("insert into notes values ('café durable')")
        # An open client must not block stop() (SIGTERM would be a "smart" shutdown waiting for us).
        fresh_postgres.restart()
    finally:
        await conn.close()
    assert await _fetchval(fresh_postgres.dsn, "select body from notes") == "café durable"
    assert await _fetchval(fresh_postgres.dsn, "select upper(body) from notes") == "CAFÉ DURABLE"

    fresh_postgres.kill()  # crash: committed data survives WAL recovery
    fresh_postgres.start()
    assert await _fetchval(fresh_postgres.dsn, "select count(*) from notes") == 1


async def test_postgres_dump_and_create_database(fresh_postgres: PostgresServer) -> None:
    fresh_postgres.create_database("landfall")
    fresh_postgres.create_database("landfall", exist_ok=True)
    with pytest.raises(Exception, match="already exists"):
        fresh_postgres.create_database("landfall")
    dsn = fresh_postgres.dsn_for("landfall")
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("create table creds (token text)")
        await conn.execute("insert into creds values ('hunter2-token')")
    finally:
        await conn.close()
    dump = fresh_postgres.dump("landfall")
    assert "CREATE TABLE public.creds" in dump
    assert "hunter2-token" in dump
    assert "hunter2-token" not in fresh_postgres.dump()


def test_postgres_long_data_dir_uses_short_socket_dir(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    with PostgresServer(deep) as server:
        socket_dir = server.socket_dir
        assert not socket_dir.is_relative_to(deep)
        assert (socket_dir / f".s.PGSQL.{server.port}").is_socket()
    assert not socket_dir.exists()


# -- OpenBao ---------------------------------------------------------------------------------------


def _kv_roundtrip(addr: str, token: str, path: str, *, write: dict[str, str] | None = None) -> dict[str, str]:
    client = hvac.Client(url=addr, token=token)
    try:
        if write is not None:
            client.secrets.kv.v2.create_or_update_secret(path=path, secret=write, mount_point="secret")
        response = client.secrets.kv.v2.read_secret_version(
            path=path, mount_point="secret", raise_on_deleted_version=True
        )
        data: dict[str, str] = response["data"]["data"]
        return data
    finally:
        client.adapter.close()


def test_openbao_dev_kv_v2(tmp_path: Path) -> None:
    with OpenBaoServer(tmp_path / "bao", root_token="test-root") as bao:
        assert bao.token == "test-root"
        assert bao.addr == f"http://127.0.0.1:{bao.port}"
        assert _kv_roundtrip(bao.addr, bao.token, "app/db", write={"password": "pw1"}) == {"password": "pw1"}


def test_openbao_persistent_survives_restart(tmp_path: Path) -> None:
    bao = OpenBaoServer(tmp_path / "bao", persistent=True, root_token="landfall-root")
    bao.start()
    try:
        assert _kv_roundtrip(bao.addr, bao.token, "app/db", write={"password": "pw2"}) == {"password": "pw2"}
        init_file = tmp_path / "bao" / "init.json"
        assert stat.S_IMODE(init_file.stat().st_mode) == 0o600

        bao.restart()
        assert _kv_roundtrip(bao.addr, bao.token, "app/db") == {"password": "pw2"}

        bao.kill()
        bao.start()
        assert _kv_roundtrip(bao.addr, "landfall-root", "app/db") == {"password": "pw2"}
    finally:
        bao.stop()

    # A fresh handle on the same directory (what `make up` does after a reboot) reuses the state.
    again = OpenBaoServer(tmp_path / "bao", persistent=True)
    with again:
        assert again.token.startswith("s.")
        assert _kv_roundtrip(again.addr, again.token, "app/db") == {"password": "pw2"}


# -- Registry --------------------------------------------------------------------------------------


@pytest.fixture
def fresh_registry(tmp_path: Path) -> Iterator[DockerRegistry]:
    server = DockerRegistry(tmp_path / "registry", users={"ci": "pushpass"})
    server.start()
    yield server
    server.stop()


def test_registry_requires_basic_auth(fresh_registry: DockerRegistry) -> None:
    assert fresh_registry.url == f"http://{fresh_registry.host}"
    assert _http("GET", f"{fresh_registry.url}/v2/")[0] == 401
    assert _http("GET", f"{fresh_registry.url}/v2/", _basic("ci", "wrong"))[0] == 401
    assert _http("GET", f"{fresh_registry.url}/v2/", _basic("ci", "pushpass"))[0] == 200


def test_registry_push_image_then_head_manifest(fresh_registry: DockerRegistry) -> None:
    digest = fresh_registry.push_image("team/app", "v1", username="ci", password="pushpass")
    assert digest.startswith("sha256:")
    status, headers = _http(
        "HEAD",
        f"{fresh_registry.url}/v2/team/app/manifests/v1",
        {**_basic("ci", "pushpass"), "Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert status == 200
    assert headers["Docker-Content-Digest"] == digest

    other = fresh_registry.push_image("team/app", "v2", username="ci", password="pushpass")
    assert other != digest
    with pytest.raises(Exception, match="401"):
        fresh_registry.push_image("team/app", "v3")

    fresh_registry.restart()  # storage is on disk
    status, headers = _http(
        "HEAD",
        f"{fresh_registry.url}/v2/team/app/manifests/{digest}",
        {**_basic("ci", "pushpass"), "Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert (status, headers["Docker-Content-Digest"]) == (200, digest)


def test_registry_anonymous(tmp_path: Path) -> None:
    with DockerRegistry(tmp_path / "registry") as anon:
        assert _http("GET", f"{anon.url}/v2/")[0] == 200
        assert anon.push_image("anon", "latest").startswith("sha256:")


# -- Lifecycle and failures ------------------------------------------------------------------------


def test_stop_and_kill_are_idempotent(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "nats")
    server.stop()
    server.kill()
    server.start()
    server.start()  # already running: no-op
    assert server.is_running()
    server.stop()
    server.stop()
    server.kill()
    assert server.pid is None
    assert (tmp_path / "nats" / "nats-server.log").read_text().count("Server is ready") == 1


def test_second_handle_refuses_to_start_over_a_live_server(tmp_path: Path) -> None:
    first = NatsServer(tmp_path / "nats")
    with first:
        assert first.pid_file.read_text().strip() == str(first.pid)
        second = NatsServer(tmp_path / "nats")
        with pytest.raises(ServerError, match=f"still running .*pid {first.pid}"):
            second.start()
    assert not first.pid_file.exists()
    with second:
        assert second.is_running()


def test_failed_start_reports_log_tail_and_hint(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "nats", config_extra="this is { not valid")
    with pytest.raises(ServerStartError) as caught:
        server.start(timeout=10)
    message = str(caught.value)
    assert "exited with code" in message
    assert "nats.conf" in message
    assert "what to do:" in message
    assert not server.is_running()


def test_auto_port_conflict_is_retried_with_new_ports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from libs.devstack.servers import process as servers  # where servers pick their ports

    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        ports = iter([taken])
        monkeypatch.setattr(
            servers, "free_port", lambda host="127.0.0.1": next(ports, None) or free_port(host)
        )
        with NatsServer(tmp_path / "nats") as server:
            assert server.port != taken
            assert server.is_running()
        assert "address already in use" in (tmp_path / "nats" / "nats-server.log").read_text()


def test_port_in_use_is_explained(tmp_path: Path) -> None:
    port = free_port()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        server = PostgresServer(tmp_path / "pg", port=port)
        with pytest.raises(ServerStartError) as caught:
            server.start(timeout=15)
    assert caught.value.port_conflict
    assert "ps -ef | grep postgres" in str(caught.value)
    assert not server.is_running()
