"""Failures of the PostgreSQL programs, throwaway servers and decryption are DbopsErrors: the bot shows
their message instead of "internal error"."""
import io

import pytest

from handlers.backup import crypto
from handlers.errors import DbopsError
from handlers.pginstance import pg_tool


def test_missing_postgres_programs_say_where_dbops_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("DBOPS_PG_BIN", str(tmp_path))
    with pytest.raises(DbopsError, match="DBOPS_PG_BIN=.* has no pg_dump in it"):
        pg_tool("pg_restore")


def test_a_file_that_is_not_an_encrypted_archive_is_a_shown_error():
    with pytest.raises(DbopsError, match="not a dbops encrypted archive"):
        crypto.decrypt_stream(io.BytesIO(b"PGDMP" + b"\0" * 200), io.BytesIO(), b"k" * 32)
