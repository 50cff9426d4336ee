"""Render API failures, each with a message that says what to check. Never the key, never a URL's query."""
from __future__ import annotations

from ..errors import ConfigError, DbopsError


class RenderError(DbopsError):
    """Render's API could not do what was asked; the message says why and what to check."""


class RenderAuthError(ConfigError):
    """401/403: the key, or the workspace it belongs to."""


class RenderNotFound(RenderError):
    """404: no such instance (or not in the key's workspace)."""


class RenderUnavailable(RenderError):
    """5xx, rate limits that never cleared, or the network: after the retries."""


class UnsafeArchive(DbopsError):
    """An export archive with a member that would land outside its folder, a link, a device, or too big."""
