"""The machine's PostgreSQL and Redis for the chart-to-process tests.

PostgreSQL: the local server (127.0.0.1:5432, trust authentication, superuser `postgres`,
maintenance database `test`; override with $MNEMOM_CHART_TEST_PG as a libpq URL). Every test gets
a fresh database, owned by the role the rendered DATABASE_URL names (created when missing, kept
afterwards: roles are cluster-wide and cheap), and dropped at the end. The rendered URL keeps its
user, password and query (`sslmode=require` really negotiates TLS with the local server); only its
host, port and database name are pointed at the fresh database.

Redis: the local server (127.0.0.1:6379, $MNEMOM_CHART_TEST_REDIS_PORT) for URLs without a
password, and a private `redis-server` with `requirepass` set to the rendered password for the
chart's `redis.auth` scenarios (the local server has no password).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
import zlib
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

ADMIN_URL = os.environ.get("MNEMOM_CHART_TEST_PG", "postgres://postgres@127.0.0.1:5432/test")
REDIS_PORT = int(os.environ.get("MNEMOM_CHART_TEST_REDIS_PORT", "6379"))
POSTGRES_SCHEMES = ("postgres://", "postgresql://")


def _admin() -> tuple[str, int]:
    u = urlsplit(ADMIN_URL)
    return u.hostname or "127.0.0.1", u.port or 5432


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def psql(sql: str, database: str | None = None, timeout: float = 60) -> str:
    """Runs SQL as the administrator; returns unaligned, tuples-only output."""
    u = urlsplit(ADMIN_URL)
    host, port = _admin()
    cmd = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", host, "-p", str(port),
           "-U", u.username or "postgres", "-d", database or u.path.lstrip("/") or "postgres", "-c", sql]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, "PGCONNECT_TIMEOUT": "5"})
    if p.returncode != 0:
        raise AssertionError(f"psql failed ({p.returncode}): {sql}\n{p.stderr}")
    return p.stdout.strip()


def ensure_role(role: str) -> None:
    """CREATE ROLE … LOGIN unless it exists (concurrent creators tolerated)."""
    psql(
        "DO $$ BEGIN "
        f"IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role.replace(chr(39), chr(39) * 2)}') THEN "
        f"CREATE ROLE {ident(role)} LOGIN; END IF; "
        "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
    )


def sqlx_lock_id(database: str) -> int:
    """The advisory-lock key sqlx's PostgreSQL migrator (and so `mnemom-gateway migrate`) takes:
    0x3d32ad9e * CRC-32/ISO-HDLC(database name)."""
    return 0x3D32AD9E * zlib.crc32(database.encode())


class FreshDatabase:
    """One test's database on the local server; created lazily by `create`, dropped by `drop`."""

    def __init__(self) -> None:
        self.name = f"chart_{uuid.uuid4().hex[:16]}"
        self.owner: str | None = None
        self.created = False

    def create(self, owner: str | None) -> "FreshDatabase":
        assert not self.created, "one database per test"
        if owner:
            ensure_role(owner)
        psql(f"CREATE DATABASE {ident(self.name)}" + (f" OWNER {ident(owner)}" if owner else ""))
        self.owner, self.created = owner, True
        return self

    def create_for(self, url: str) -> "FreshDatabase":
        """Creates the database for a rendered DATABASE_URL: owned by the role the URL names."""
        return self.create(urlsplit(url).username)

    def drop(self) -> None:
        if self.created:
            psql(f"DROP DATABASE IF EXISTS {ident(self.name)} WITH (FORCE)")
            self.created = False

    def point(self, url: str) -> str:
        """The rendered URL with its host, port and database replaced by this database's; user,
        password and query are kept."""
        assert url.startswith(POSTGRES_SCHEMES), url
        u = urlsplit(url)
        userinfo = u.netloc.rpartition("@")[0]
        host, port = _admin()
        netloc = (userinfo + "@" if userinfo else "") + f"{host}:{port}"
        return f"{u.scheme}://{netloc}/{self.name}" + (f"?{u.query}" if u.query else "")

    def query(self, sql: str) -> str:
        return psql(sql, database=self.name)

    def migrations(self) -> list[tuple[int, bool]]:
        """(version, success) of every row of `_sqlx_migrations`, in order ([] when absent)."""
        if self.query("SELECT to_regclass('public._sqlx_migrations') IS NOT NULL") != "t":
            return []
        rows = self.query("SELECT version, success FROM _sqlx_migrations ORDER BY version")
        return [(int(v), s == "t") for v, s in (r.split("|") for r in rows.splitlines() if r)]

    def table_owners(self) -> dict[str, str]:
        rows = self.query("SELECT tablename, tableowner FROM pg_tables WHERE schemaname = 'public'")
        return dict(r.split("|") for r in rows.splitlines() if r)

    def lock_waiters(self) -> int:
        """Sessions waiting for an advisory lock in this database."""
        return int(psql(
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
            f"WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = '{self.name}'"
        ))

    @contextlib.contextmanager
    def holding_migration_lock(self) -> Iterator[None]:
        """Holds the migrator's advisory lock from another session until the block ends."""
        u = urlsplit(ADMIN_URL)
        host, port = _admin()
        p = subprocess.Popen(
            ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", host, "-p", str(port), "-U", u.username or "postgres",
             "-d", self.name],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        try:
            assert p.stdin and p.stdout
            p.stdin.write(f"SELECT pg_advisory_lock({sqlx_lock_id(self.name)});\n\\echo locked\n")
            p.stdin.flush()
            line = p.stdout.readline()
            while line and line.strip() != "locked":
                line = p.stdout.readline()
            assert line.strip() == "locked", "could not take the advisory lock"
            yield
        finally:
            if p.stdin:
                p.stdin.close()  # ends the session: the lock is released
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def unreachable_port() -> int:
    """A local TCP port nothing listens on (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------- Redis


def point_redis(url: str, port: int) -> str:
    """The rendered REDIS_URL at 127.0.0.1:port; scheme, credentials and database index kept."""
    u = urlsplit(url)
    userinfo = u.netloc.rpartition("@")[0]
    netloc = (userinfo + "@" if userinfo else "") + f"127.0.0.1:{port}"
    return f"{u.scheme}://{netloc}{u.path}" + (f"?{u.query}" if u.query else "")


def redis_ping(port: int, password: str | None = None) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            if password:
                s.sendall(f"*2\r\n$4\r\nAUTH\r\n${len(password)}\r\n{password}\r\n".encode())
                if not s.recv(64).startswith(b"+OK"):
                    return False
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def redis_server(password: str) -> Iterator[int]:
    """A private redis-server on a free port requiring `password`; yields its port."""
    exe = shutil.which("redis-server")
    assert exe, "redis-server is needed for the redis.auth scenarios"
    port = unreachable_port()
    workdir = Path(tempfile.mkdtemp(prefix="chart-redis-"))
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--requirepass", password, "--save", "", "--appendonly", "no",
         "--dir", str(workdir), "--daemonize", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not redis_ping(port, password):
            assert proc.poll() is None and time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)
