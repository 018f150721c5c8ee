"""Shared fixtures: database backends (SQLite, PostgreSQL, MariaDB), each a fresh database.

PostgreSQL and MariaDB tests skip with a reason when the server is absent, unless
TABLECHAIN_REQUIRE_SERVERS is set (CI sets it), in which case a missing server fails the test.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

PG_ADMIN_URL = os.environ.get("TABLECHAIN_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MARIADB_ADMIN_URL = os.environ.get("TABLECHAIN_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test")


def _server_missing(name: str, exc: Exception) -> None:
    if os.environ.get("TABLECHAIN_REQUIRE_SERVERS"):
        pytest.fail(f"{name} is required (TABLECHAIN_REQUIRE_SERVERS is set) but unreachable: {exc}")
    pytest.skip(f"{name} server not reachable on this machine: {exc}")


def _fresh_server_database(admin_url: str, name: str) -> Iterator[str]:
    dbname = "tc_" + secrets.token_hex(6)
    try:
        admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {dbname}"))
    except Exception as exc:  # noqa: BLE001 - any connection failure means "server missing"
        _server_missing(name, exc)
        return
    url = sa.make_url(admin_url).set(database=dbname)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            if name == "PostgreSQL":
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)"))
            else:
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {dbname}"))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres", "mariadb"])
def db_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A URL of a fresh, empty database on each backend in turn."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'tables.db'}"
    elif request.param == "postgres":
        yield from _fresh_server_database(PG_ADMIN_URL, "PostgreSQL")
    else:
        yield from _fresh_server_database(MARIADB_ADMIN_URL, "MariaDB")


@pytest.fixture(scope="session")
def ray_session() -> Iterator[object]:
    """One local Ray instance for the whole test session (never one per test): loopback only,
    no dashboard, two CPUs, and the custom resources ``validator-v0`` .. ``validator-v7`` that
    place validator actors. Tests that use it are marked ``ray``."""
    from tablechain.platform.cluster import init_ray

    ray = init_ray(validators=[f"v{i}" for i in range(8)], num_cpus=2,
                   namespace=f"tablechain-tests-{os.getpid()}")
    try:
        yield ray
    finally:
        ray.shutdown()
