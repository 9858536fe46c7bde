"""The PostgreSQL role the tests get from ``.ci/services`` may do nothing beyond its own
database: not a superuser (a superuser runs ``COPY ... TO PROGRAM``, i.e. any command as
the server's user), no CREATEDB/CREATEROLE/REPLICATION/BYPASSRLS, the owner of the test
database (so the relay tests may create their schemas there), a database other roles may
not connect to, and a password nobody can guess."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.relay.conftest import postgres_dsn

pytestmark = [pytest.mark.postgres, pytest.mark.anyio]


async def test_the_test_role_owns_its_database_and_nothing_more() -> None:
    import asyncpg

    dsn = postgres_dsn()
    password = urlsplit(dsn).password or ""
    assert len(password) >= 32 and password != urlsplit(dsn).username, "a guessable password"
    con = await asyncpg.connect(dsn)
    try:
        role = await con.fetchrow(
            "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls"
            " FROM pg_roles WHERE rolname = current_user")
        assert dict(role) == {"rolsuper": False, "rolcreatedb": False, "rolcreaterole": False,
                              "rolreplication": False, "rolbypassrls": False}
        assert not await con.fetchval(
            "SELECT pg_has_role(current_user, 'pg_execute_server_program', 'MEMBER')"
            " OR pg_has_role(current_user, 'pg_write_server_files', 'MEMBER')")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await con.execute("COPY (SELECT 1) TO PROGRAM 'true'")
        owner, public_connect = await con.fetchrow(
            "SELECT pg_get_userbyid(datdba) = current_user,"
            " has_database_privilege('public', current_database(), 'CONNECT')"
            " FROM pg_database WHERE datname = current_database()")
        assert owner, "the test database must belong to the test role"
        assert not public_connect, "every role of the cluster may connect to the test database"
        # what the relay tests do: their own schema inside the database
        await con.execute("CREATE SCHEMA t_role_check")
        await con.execute("DROP SCHEMA t_role_check")
    finally:
        await con.close()


def test_the_password_file_is_private() -> None:
    path = Path(os.environ.get("OA_TEST_POSTGRES_PASSWORD_FILE",
                               "/var/lib/oa-node-test/postgres-password"))
    try:
        st = path.stat()
        parent = path.parent.stat()
    except PermissionError:  # not root: the folder is closed to us, which is the point
        return
    except FileNotFoundError:
        pytest.skip(f"{path}: no password file (the DSN was not made by .ci/services)")
    assert stat.S_IMODE(st.st_mode) == 0o600 and stat.S_IMODE(parent.st_mode) == 0o700
    assert path.read_text() == urlsplit(postgres_dsn()).password
