"""A withheld column stays unreadable through the views made after the role: the owner's default
privileges give the role SELECT on every new view, so a view (or a materialized view, or a view of
that view) reading `Users.PasswordHash` fails `readonly check` with the REVOKE that fixes it, and
`readonly repair` revokes it. Real PostgreSQL, the owner a non-superuser with CREATEROLE."""
from __future__ import annotations

import psycopg
import pytest

from handlers import readonly
from tests.test_readonly import env, owner_password  # noqa: F401 -- the fixtures of the read-only tests

VIEWS = """
CREATE VIEW "UserDirectory" AS SELECT "Email", "PasswordHash" FROM "Users";
CREATE MATERIALIZED VIEW "HashCopy" AS SELECT * FROM "UserDirectory";
CREATE VIEW "Emails" AS SELECT "Email" FROM "Users";
"""


def withheld_check(report) -> dict:
    [row] = [c for c in report.data["checks"]["Coverage"] if c["check"].startswith("withheld columns")]
    return row


def reads(url: str, query: str) -> str | None:
    """None when the query runs as the role, else its SQLSTATE."""
    with psycopg.connect(url, autocommit=True) as conn:
        try:
            conn.execute(query).fetchall()
        except psycopg.Error as exc:
            return exc.sqlstate
    return None


def test_a_view_of_a_withheld_column_fails_the_check_and_repair_revokes_it(env):  # noqa: F811
    name, created, delivery = env.create()
    assert created.ok, created.summary
    with env.owner() as conn:  # the attack of issue 20 (7): a later view, by the owner
        conn.execute(VIEWS)
    assert reads(delivery.url, 'SELECT "PasswordHash" FROM "UserDirectory"') is None  # the leak, as it was

    checked = readonly.check_role(env.target, name, env.settings, env.book)
    assert not checked.ok
    row = withheld_check(checked)
    assert not row["ok"]
    assert "public.UserDirectory (view reading public.Users.PasswordHash)" in row["detail"]
    assert "public.HashCopy (materialized view reading public.Users.PasswordHash)" in row["detail"]
    assert "Emails" not in row["detail"]
    assert f'REVOKE SELECT ON TABLE "public"."UserDirectory" FROM "{name}"' in row["fix"]
    assert env.book.get("prod", name).check_ok is False

    repaired = readonly.repair_role(env.target, name, env.settings, env.book)
    assert repaired.ok, repaired.summary
    assert withheld_check(repaired)["ok"]
    for view in ("UserDirectory", "HashCopy"):
        assert reads(delivery.url, f'SELECT * FROM "{view}"') == "42501"
    assert reads(delivery.url, 'SELECT "Email" FROM "Emails"') is None  # what reads no withheld column stays
    proof = [c for c in repaired.data["checks"][f"Proof (SET ROLE {name})"] if "a view of" in c["check"]]
    assert {c["check"].split(",")[0] for c in proof} == {"reading public.UserDirectory", "reading public.HashCopy"}
    assert all(c["ok"] for c in proof)


@pytest.mark.parametrize("statement", ["CREATE VIEW v AS SELECT u.* FROM \"Users\" u",
                                       "CREATE VIEW v AS SELECT length(\"PasswordHash\") AS n FROM \"Users\""])
def test_any_use_of_the_column_counts(env, statement):  # noqa: F811
    name, created, _ = env.create()
    with env.owner() as conn:
        conn.execute(statement)
    assert "public.v (view reading public.Users.PasswordHash)" in withheld_check(
        readonly.check_role(env.target, name, env.settings, env.book))["detail"]
