"""The errors of running PostgreSQL programs and throwaway servers."""
from __future__ import annotations

from handlers.errors import DbopsError


class PgBinariesError(DbopsError):
    """The PostgreSQL programs cannot be found or run; the message says where dbops looked."""


class InstanceError(DbopsError):
    """A throwaway server could not be set up, started or stopped; its secrets are scrubbed from the message."""


class PgToolError(DbopsError):
    """A client program cannot be run, or cannot be given this connection."""


class VersionError(DbopsError):
    """The PostgreSQL majors do not fit: an archive an older server cannot take, a copy that would not be
    faithful to its source. The message says which majors, and what to do."""
