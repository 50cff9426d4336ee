"""`python -m bot`: serve Slack. HTTP (gunicorn, the default) or Socket Mode when SLACK_APP_TOKEN is set."""
from __future__ import annotations

import argparse
import logging
import sys
import threading

from handlers.errors import ConfigError, DbopsError, TargetUnreachable
from handlers.target import scrub

from .areas import AREAS
from .core.config import load_settings, prepare_folders
from .core.logs import setup_logging
from .core.registry import Registry
from .core.service import BotService
from .core.state.store import StateStore
from .frontends.server import create_wsgi_app
from .frontends.slack.app import build_app


def preflight():
    """Fail before serving on a missing or bad setting; an unreachable state database does not stop it."""
    settings = load_settings(require_slack=True, checks=Registry(AREAS).settings_checks)
    prepare_folders(settings)  # TMPDIR first: Python's tempfile would quietly use /tmp instead
    try:
        # applies the state migrations
        StateStore(settings.state_url, min_size=0, max_size=1, named=settings.state_url_env).close()
    except TargetUnreachable as exc:
        # Served all the same, degraded: status, the backup list and restores work from storage.
        print(f"dbops: starting degraded: {exc}", file=sys.stderr)
    return settings


def serve_http(settings) -> None:
    from gunicorn.app.base import BaseApplication

    class DbopsServer(BaseApplication):
        def load_config(self) -> None:
            # One worker process: the job pool and scheduler live in it; scale with replicas.
            self.cfg.set("bind", f"0.0.0.0:{settings.port}")
            self.cfg.set("workers", 1)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("threads", 8)
            self.cfg.set("timeout", 120)
            self.cfg.set("graceful_timeout", 20)
            self.cfg.set("accesslog", None)
            self.cfg.set("worker_exit", _close_service)

        def load(self):
            return create_wsgi_app(settings)

    DbopsServer().run()


def _close_service(server, worker) -> None:
    """gunicorn's worker_exit hook: queued work is told it did not run."""
    service = getattr(getattr(worker, "wsgi", None), "service", None)
    if service is not None:
        service.close()


def serve_socket_mode(settings) -> int:
    """Connects first, then starts the bot's background work; a first connection Slack refuses (a wrong
    SLACK_APP_TOKEN, Socket Mode off in the app) is one line on stderr and exit status 1."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    setup_logging(settings.secrets())
    svc = BotService(settings, Registry(AREAS), start_background=False)
    # The handler's own logger: it would log the refusal (and Bolt a traceback) before we say it once.
    socket_log = logging.getLogger("dbops.socket")
    handler = SocketModeHandler(build_app(svc), settings.slack_app_token, logger=socket_log)
    socket_log.setLevel(logging.CRITICAL)
    try:
        handler.connect()
    except Exception as exc:  # noqa: BLE001 -- SlackApiError, or the network: said in one line
        svc.close()
        print(f"dbops: {scrub(socket_mode_failure(exc), settings.secrets())}", file=sys.stderr)
        return 1
    finally:
        socket_log.setLevel(logging.NOTSET)
    logging.getLogger("dbops.service").info("connected to Slack in Socket Mode")
    svc.startup()
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        handler.close()
        svc.close()
    return 0


def socket_mode_failure(exc: Exception) -> str:
    from slack_sdk.errors import SlackApiError

    check = ("check SLACK_APP_TOKEN: an app-level token (xapp-...) with the connections:write scope, from the "
             "app's Basic Information page, with Socket Mode turned on in the app (README: Socket Mode)")
    if isinstance(exc, SlackApiError):
        code = (exc.response.get("error") if exc.response is not None else None) or "refused"
        return f"Socket Mode could not connect: Slack answered {code}; {check}"
    reason = str(exc).splitlines()[0][:200] if str(exc) else ""
    return (f"Socket Mode could not reach Slack ({type(exc).__name__}{': ' + reason if reason else ''}); check "
            "the network (and SLACK_API_URL if it is set), then SLACK_APP_TOKEN")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot", description="Serve the dbops Slack bot.")
    parser.add_argument("--mode", choices=("auto", "http", "socket"), default="auto",
                        help="http (gunicorn on $PORT), socket (Socket Mode), auto: socket when SLACK_APP_TOKEN is set")
    args = parser.parse_args(argv)
    try:
        settings = preflight()
        mode = args.mode
        if mode == "auto":
            mode = "socket" if settings.slack_app_token else "http"
        if mode == "socket" and not settings.slack_app_token:
            raise ConfigError("SLACK_APP_TOKEN is not set: Socket Mode needs an app-level token with the "
                              "connections:write scope (starts with xapp-)")
    except DbopsError as exc:
        print(f"dbops: {exc}", file=sys.stderr)
        return 2
    if mode == "socket":
        return serve_socket_mode(settings)
    else:
        serve_http(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
