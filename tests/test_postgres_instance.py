import os
import subprocess
import sys
import textwrap

import psycopg

from handlers.postgres import TemporaryInstance, find_leftover_instances, remove_leftover_instances
from handlers.postgres import binaries as pginstance


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


def test_tool_version_is_the_bundled_18():
    assert pginstance.tool_version("pg_dump")[0] >= 18


def test_leftover_of_a_killed_process_is_found_and_removed(tmp_path):
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {os.getcwd()!r})
        from handlers.postgres import TemporaryInstance
        inst = TemporaryInstance(purpose="drill", parent={str(tmp_path)!r}).start()
        print(inst.path, flush=True)
        os._exit(0)  # dies without cleaning up, like a killed bot
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    leftover = out.strip()
    assert os.path.isdir(leftover)
    assert [str(p) for p in find_leftover_instances(tmp_path, purpose="drill")] == [leftover]
    mine = TemporaryInstance(purpose="drill", parent=tmp_path).start()  # alive: must not be touched
    try:
        removed = remove_leftover_instances(tmp_path, purpose="drill")
        assert [str(p) for p in removed] == [leftover]
        assert not os.path.exists(leftover)
        assert mine.path.exists()
    finally:
        mine.stop()


def test_demo_database_has_the_asidenote_tables(demo_db):
    with psycopg.connect(demo_db) as conn:
        tables = [r[0] for r in conn.execute("SELECT relname FROM pg_stat_user_tables").fetchall()]
        rows = {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
    assert rows.keys() >= {"Users", "Notes", "IndexCards", "Projects", "Boards", "RefreshTokens",
                           "EmailVerificationTokens", "ExternalLogins", "AuditLogs"}
    assert sum(rows.values()) >= 200_000
