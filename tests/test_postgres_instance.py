import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import psycopg
import pytest

from handlers.postgres import (
    InstanceError,
    TemporaryInstance,
    asroot,
    find_leftover_instances,
    remove_leftover_instances,
)
from handlers.postgres import binaries as pginstance
from handlers.postgres import instance as pgserver


def test_instance_runs_postgres_18_on_a_private_socket_and_is_removed(tmp_path):
    inst = TemporaryInstance(purpose="unit", parent=tmp_path).start()
    path = inst.path
    with psycopg.connect(inst.dsn()) as conn:
        version = conn.execute("SHOW server_version_num").fetchone()[0]
        listen = conn.execute("SHOW listen_addresses").fetchone()[0]
    assert int(version) >= 180000
    assert listen == ""  # no TCP port
    inst.stop()
    assert not path.exists()


def test_an_instance_in_a_deep_folder_gets_a_short_private_socket_folder_removed_on_stop():
    # Not under pytest's tmp_path: as root, its 0700 parent would send the server to the root base.
    top = Path(tempfile.mkdtemp(prefix="deep-"))
    deep = top
    while len(str(deep)) < 200:
        deep = deep / ("d" * 40)
        deep.mkdir()
    for folder in (deep, *deep.parents[:len(deep.relative_to(top).parts)]):
        folder.chmod(0o755)  # as root, the service user reaches the instance's folder by itself
    try:
        inst = TemporaryInstance(purpose="deep", parent=deep).start()
        try:
            # Where the socket used to be, its path would not fit in a Unix socket address (107 bytes).
            assert inst.server_dir.is_relative_to(deep)
            assert len(f"{inst.server_dir}/.s.PGSQL.5432.lock".encode()) > 107
            socket_dir = inst.socket_dir
            assert socket_dir.parent == Path("/tmp") and len(f"{socket_dir}/.s.PGSQL.5432.lock".encode()) <= 107
            st = socket_dir.stat()
            assert stat.S_IMODE(st.st_mode) == 0o700
            assert st.st_uid == (asroot._service_account()[0] if os.geteuid() == 0 else os.geteuid())
            with psycopg.connect(inst.dsn()) as conn:
                assert conn.execute("SHOW unix_socket_directories").fetchone()[0] == str(socket_dir)
                assert conn.execute("SELECT 1").fetchone() == (1,)
        finally:
            inst.stop()
        assert not socket_dir.exists()
        assert not list(deep.iterdir())
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_a_failed_start_leaves_no_socket_folder(tmp_path, monkeypatch):
    sockets = tmp_path / "sockets"
    sockets.mkdir()
    monkeypatch.setattr(pgserver, "SOCKET_PARENT", sockets)
    inst = TemporaryInstance(purpose="badstart", parent=tmp_path, settings={"shared_buffers": "not-a-size"})
    with pytest.raises(InstanceError, match="pg_ctl failed"):
        inst.start()
    assert inst._socket_dir is None and not list(sockets.iterdir())
    assert not list(tmp_path.glob("dbops-*"))


def test_tool_version_is_the_bundled_18():
    assert pginstance.tool_version("pg_dump")[0] >= 18


def test_leftover_of_a_killed_process_is_found_and_removed(tmp_path):
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {os.getcwd()!r})
        from handlers.postgres import TemporaryInstance
        inst = TemporaryInstance(purpose="drill", parent={str(tmp_path)!r}).start()
        print(inst.path, inst.socket_dir, flush=True)
        os._exit(0)  # dies without cleaning up, like a killed bot
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    leftover, socket_dir = out.split()
    assert os.path.isdir(leftover) and os.path.isdir(socket_dir)
    assert [str(p) for p in find_leftover_instances(tmp_path, purpose="drill")] == [leftover]
    mine = TemporaryInstance(purpose="drill", parent=tmp_path).start()  # alive: must not be touched
    try:
        removed = remove_leftover_instances(tmp_path, purpose="drill")
        assert [str(p) for p in removed] == [leftover]
        assert not os.path.exists(leftover) and not os.path.exists(socket_dir)
        assert mine.path.exists() and mine.socket_dir.exists()
    finally:
        mine.stop()


def test_demo_database_has_the_asidenote_tables(demo_db):
    with psycopg.connect(demo_db) as conn:
        tables = [r[0] for r in conn.execute("SELECT relname FROM pg_stat_user_tables").fetchall()]
        rows = {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
    assert rows.keys() >= {"Users", "Notes", "IndexCards", "Projects", "Boards", "RefreshTokens",
                           "EmailVerificationTokens", "ExternalLogins", "AuditLogs"}
    assert sum(rows.values()) >= 200_000
