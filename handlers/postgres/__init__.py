"""PostgreSQL for dbops: where its programs come from (`binaries`), throwaway servers that may run
hostile SQL (`instance`, `asroot`), client programs run safely (`client`, `dump`) and the one reading
of pg_restore (`archive`); which major a copy and a client program run (`versions`), majors fetched
into the bot's cache (`install`)."""
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
from .binaries import (
                      SUPPORTED_MAJORS,
                      bin_dir,
                      cache_dir,
                      default_major,
                      has_major,
                      installed_majors,
                      pg_tool,
                      sandbox_env,
                      tool_version,
)
from .client import Finished, exit_text, last_line, libpq_env, run_streaming, server_facts, start_tool, stop_tool
from .dump import PgDump, choose_compression, compression_argument, pg_dump_for, pg_dump_supports, pg_dump_version
from .errors import InstanceError, PgBinariesError, PgToolError, VersionError
from .instance import (
                      MARKER_FILE,
                      SUPERUSER,
                      TemporaryInstance,
                      find_leftover_instances,
                      private_work_dir,
                      remove_leftover_instances,
)
from .piped import PipedRestore, full_read_piped, toc_listing
from .versions import client_major, copy_major, majors_line, restore_major, short_version

__all__ = [
    "LEFT_OUT_ON_RESTORE", "MARKER_FILE", "SUPERUSER", "SUPPORTED_MAJORS", "VersionError", "cache_dir",
    "client_major", "copy_major", "default_major", "has_major", "installed_majors", "majors_line", "restore_major",
    "short_version", "ArchiveContents", "Finished", "InstanceError",
    "PgBinariesError", "PgToolError", "RestoreOutcome", "TemporaryInstance", "bin_dir", "choose_compression",
    "exit_text", "find_leftover_instances", "full_read", "last_line", "left_out_on_restore", "libpq_env",
    "list_archive", "major_version", "missing_table_data", "PipedRestore", "full_read_piped", "read_listing",
    "tables_without_data", "toc_listing", "pg_dump_supports", "pg_dump_version", "pg_tool",
    "private_work_dir", "remove_leftover_instances", "PgDump", "compression_argument", "pg_dump_for",
    "restore_command", "run_pg_restore",
    "run_streaming", "sandbox_env", "schemaless_toc", "server_facts", "start_tool", "stop_tool", "tool_version",
    "toc_entry", "toc_table_data", "write_use_list",
]
