"""PostgreSQL for dbops: where its programs come from (`binaries`), throwaway servers that may run
hostile SQL (`instance`, `asroot`), client programs run safely (`client`, `dump`) and the one reading
of pg_restore (`archive`)."""
from __future__ import annotations

from .archive import (
                      LEFT_OUT_ON_RESTORE,
                      ArchiveContents,
                      RestoreOutcome,
                      full_read,
                      left_out_on_restore,
                      list_archive,
                      major_version,
                      missing_table_data,
                      read_listing,
                      restore_command,
                      run_pg_restore,
                      schemaless_toc,
                      tables_without_data,
                      toc_entry,
                      toc_table_data,
                      write_use_list,
)
from .binaries import bin_dir, pg_tool, sandbox_env, tool_version
from .client import Finished, exit_text, last_line, libpq_env, run_streaming, server_facts, start_tool, stop_tool
from .dump import choose_compression, pg_dump_supports, pg_dump_version, require_pg_dump_for
from .errors import InstanceError, PgBinariesError, PgToolError
from .instance import (
                      MARKER_FILE,
                      SUPERUSER,
                      TemporaryInstance,
                      find_leftover_instances,
                      private_work_dir,
                      remove_leftover_instances,
)
from .piped import PipedRestore, full_read_piped, toc_listing

__all__ = [
    "LEFT_OUT_ON_RESTORE", "MARKER_FILE", "SUPERUSER", "ArchiveContents", "Finished", "InstanceError",
    "PgBinariesError", "PgToolError", "RestoreOutcome", "TemporaryInstance", "bin_dir", "choose_compression",
    "exit_text", "find_leftover_instances", "full_read", "last_line", "left_out_on_restore", "libpq_env",
    "list_archive", "major_version", "missing_table_data", "PipedRestore", "full_read_piped", "read_listing",
    "tables_without_data", "toc_listing", "pg_dump_supports", "pg_dump_version", "pg_tool",
    "private_work_dir", "remove_leftover_instances", "require_pg_dump_for", "restore_command", "run_pg_restore",
    "run_streaming", "sandbox_env", "schemaless_toc", "server_facts", "start_tool", "stop_tool", "tool_version",
    "toc_entry", "toc_table_data", "write_use_list",
]
