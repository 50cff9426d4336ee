"""The errors of running PostgreSQL programs and throwaway servers."""
from __future__ import annotations

from handlers.errors import DbopsError


class PgBinariesError(DbopsError):
    """The PostgreSQL programs cannot be found or run; the message says where dbops looked."""


class InstanceError(DbopsError):
    """A throwaway server could not be set up, started or stopped; its secrets are scrubbed from the message."""


class PgToolError(DbopsError):
    """A client program cannot be run, or cannot be given this connection."""
