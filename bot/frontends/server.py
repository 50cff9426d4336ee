"""The WSGI application: POST /slack/events (Bolt) and GET /healthz."""
from __future__ import annotations

import json

from slack_bolt.adapter.wsgi import SlackRequestHandler

from ..areas import AREAS
from ..core.config import Settings, load_settings
from ..core.logs import setup_logging
from ..core.registry import Registry
from ..core.service import BotService
from .slack.app import build_app


def create_wsgi_app(settings: Settings | None = None):
    registry = Registry(AREAS)
    settings = settings or load_settings(require_slack=True, checks=registry.settings_checks)
    setup_logging(settings.secrets())
    svc = BotService(settings, registry)
    slack = SlackRequestHandler(build_app(svc), path="/slack/events")

    def app(environ, start_response):
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
        if path == "/healthz" and method in ("GET", "HEAD"):
            healthy, body = svc.health()
            payload = json.dumps(body).encode()
            start_response("200 OK" if healthy else "503 Service Unavailable",
                           [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
            return [payload]
        if path == "/slack/events":
            return slack(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]

    app.service = svc  # for tests and the Socket Mode runner
    return app
