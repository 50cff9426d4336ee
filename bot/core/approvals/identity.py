"""Who asked: Slack users, terminal logins mapped to them under [identities], and how each is shown."""
from __future__ import annotations

import re

from handlers.errors import ConfigError

from ..config import Settings

SLACK_ID = re.compile(r"[UW][A-Z0-9]{2,}")

def identities(settings: Settings) -> dict[str, str]:
    """[identities] in dbops.toml: a terminal login or CI actor ($GITHUB_ACTOR) -> its Slack user ID."""
    section = settings.section("identities")
    for login, slack_id in section.items():
        if not isinstance(slack_id, str) or not SLACK_ID.fullmatch(slack_id):
            raise ConfigError(f"[identities].{login} must be a Slack user ID like \"U0123456789\", not {slack_id!r}")
    return dict(section)


def slack_identity(actor: str, known: dict[str, str]) -> str | None:
    """The Slack user behind an actor: itself for a Slack user, the mapped ID for `cli:<login>`."""
    if SLACK_ID.fullmatch(actor):
        return actor
    if actor.startswith("cli:"):
        return known.get(actor[4:])
    return None


def shown_actor(actor: str) -> str:
    """An actor that is not a Slack user, safe inside backticks (a login is whatever the terminal says)."""
    return re.sub(r"[^A-Za-z0-9_.:@+-]", "?", actor)[:80]


def mention(actor: str, slack_id: str | None = None) -> str:
    """A Slack mention only for a real Slack user ID; never `<@cli:...>`."""
    slack_id = slack_id if slack_id is not None else (actor if SLACK_ID.fullmatch(actor) else None)
    if slack_id:
        return f"<@{slack_id}>" + ("" if slack_id == actor else f" (`{shown_actor(actor)}`)")
    return f"`{shown_actor(actor)}` (unverified)"


def terminal_claim(actor: str) -> str | None:
    """What a request says of a terminal requester: its login is whatever the terminal's LOGNAME,
    USER or GITHUB_ACTOR say, so it is a claim (None for a Slack user, whom Slack vouches for)."""
    if not actor.startswith("cli:"):
        return None
    return (f"The requester `{shown_actor(actor)}` is a terminal login: a claim (the terminal's LOGNAME, USER or "
            "GITHUB_ACTOR say it), not proof of who asked, so it never lets a request apply without an approval.")
