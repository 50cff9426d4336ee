"""Logging that cannot leak: every formatted line (tracebacks included) is scrubbed of secrets."""
from __future__ import annotations

import logging
import os

from handlers.target import scrub


class ScrubbingFormatter(logging.Formatter):
    def __init__(self, secrets: list[str], fmt: str) -> None:
        super().__init__(fmt)
        self.secrets = secrets

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record), self.secrets)


def setup_logging(secrets: list[str], level: str | None = None) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(ScrubbingFormatter(secrets, "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level or os.environ.get("DBOPS_LOG_LEVEL", "INFO"))
    for noisy in ("slack_bolt", "slack_sdk", "psycopg.pool", "botocore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
