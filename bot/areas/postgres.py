"""`pg install [major]`, `pg list`, and the status line naming each target's PostgreSQL and its copies'.

Drills, rehearsals and restores run on the PostgreSQL major of the database they stand for; this
area puts those majors on the machine (terminal only: it runs pip on the bot's machine, which the
Render build step does too) and says in `status` which major every target runs and its copies run.
"""
from __future__ import annotations

from handlers.errors import DbopsError, UsageError
from handlers.report import Outcome, Report, Section, Table, Verdict

from ..core.command import Arg, command, whole_number
from ..core.config import Settings
from ..core.registry import Area, Invocation, StatusLine


def postgres_settings(settings: Settings):
    from handlers.postgres.settings import PostgresSettings

    return PostgresSettings.from_dict(settings.section("postgres"))


def _server_version(target) -> str:
    """"16.4": the target's PostgreSQL now. Raises DbopsError (TargetUnreachable) when it cannot be asked."""
    from handlers.postgres import short_version

    with target.connect(connect_timeout=5) as conn:
        return short_version(conn.execute("SHOW server_version").fetchone()[0])


def _majors_wanted(inv: Invocation) -> tuple[list[int], list[str]]:
    """The majors of [postgres] majors and of each reachable target; and a note per target not asked."""
    from handlers.postgres import major_version

    majors, notes = set(postgres_settings(inv.settings).majors), []
    for name, target in inv.settings.targets.items():
        try:
            version = _server_version(target)
        except DbopsError as exc:
            notes.append(f"`{name}` not asked: {exc}")
            continue
        majors.add(major_version(version))
        notes.append(f"`{name}` runs PostgreSQL {version}")
    return sorted(m for m in majors if m is not None), notes


@command("pg install", "put a PostgreSQL major (14 to 18) into the bot's cache, for drills, rehearsals and "
                       "restores on the major the database runs",
         Arg("major", "e.g. 16 (default: the majors the targets run, and [postgres] majors)",
             type=whole_number(1, 99)),
         Arg("--upgrade", "fetch the newest minor release even when the major is there", flag=True),
         where="cli", takes_target=False, needs_state=False)
def pg_install(inv: Invocation) -> Report:
    from handlers.postgres import PgBinariesError, cache_dir
    from handlers.postgres.binaries import describe_major, require_supported
    from handlers.postgres.install import install_major

    notes: list[str] = []
    if inv.args.major is not None:
        majors = [inv.args.major]
    else:
        majors, notes = _majors_wanted(inv)
        if not majors:  # not a failure: a build step must not stop a deploy for it; status says what is missing
            return Report(title="dbops pg install", summary="nothing to install: no target answered and [postgres] "
                          "majors is empty; give a major (`dbops pg install 16`) or set [postgres] majors",
                          sections=[Section("Targets", text="\n".join(notes))] if notes else [],
                          data={"majors": [], "failed": []})
    for major in majors:
        try:
            require_supported(major)
        except PgBinariesError as exc:
            raise UsageError(str(exc)) from None
    rows, failed = [], []
    for major in majors:
        here = describe_major(major)
        if not inv.args.upgrade and here["version"] != "-" and not here["source"].startswith("dbops pg install"):
            rows.append([str(major), here["version"], f"already here: {here['source']}"])
            continue
        try:
            done = install_major(major, upgrade=inv.args.upgrade, progress=inv.progress)
        except PgBinariesError as exc:
            failed.append(major)
            rows.append([str(major), "-", f"{Verdict.FAILED.word}: {exc}"])
            continue
        rows.append([str(major), done.version, ("already installed" if done.already else "installed")
                     + f" ({done.package})"])
    folder = cache_dir()
    summary = (f"{len(majors) - len(failed)} of {len(majors)} PostgreSQL majors ready in {folder}"
               if failed else f"PostgreSQL {', '.join(map(str, majors))} ready in {folder}")
    sections = [Section("Majors", table=Table(["major", "version", "result"], rows))]
    if notes:
        sections.append(Section("Targets", text="\n".join(notes)))
    return Report(title="dbops pg install", summary=summary, outcome=Outcome.FAILED if failed else Outcome.OK,
                  sections=sections, data={"folder": str(folder), "majors": majors, "failed": failed,
                                           "rows": rows})


@command("pg list", "the PostgreSQL majors this machine can run copies on, and where each comes from",
         where="cli", takes_target=False, needs_state=False)
def pg_list(inv: Invocation) -> Report:
    from handlers.postgres import cache_dir, installed_majors
    from handlers.postgres.binaries import SUPPORTED_MAJORS, describe_major

    rows = [describe_major(major) for major in SUPPORTED_MAJORS]
    have = installed_majors()
    summary = (f"copies can run on PostgreSQL {', '.join(map(str, have))}" if have else "no PostgreSQL major here")
    missing = [m for m in SUPPORTED_MAJORS if m not in have]
    if missing:
        summary += f"; `dbops pg install {missing[0]}` adds one"
    return Report(title="PostgreSQL majors", summary=summary,
                  sections=[Section("Majors", table=Table(["major", "version", "from"],
                                                          [[r["major"], r["version"], r["source"]] for r in rows]))],
                  facts=[("Cache folder", str(cache_dir()))], data={"majors": rows, "cache_dir": str(cache_dir())})


def majors_line(inv: Invocation) -> tuple[str, bool, str]:
    """"prod: PostgreSQL 16.4 · copies on 16.15", or the install command when that major is not here."""
    from handlers.postgres import PgBinariesError, copy_major, major_version, tool_version
    from handlers.postgres import majors_line as line

    target = inv.target
    try:
        version = _server_version(target)
    except DbopsError:
        return "PostgreSQL", True, f"`{target.name}` not asked: it is unreachable (see Targets)"
    try:
        major = copy_major(major_version(version))
        copy = ".".join(map(str, tool_version("postgres", major)))
    except PgBinariesError as exc:
        return "PostgreSQL", False, f"{target.name}: PostgreSQL {version} · no copies: {exc}"
    return "PostgreSQL", True, line(target.name, version, copy, "copies on")


AREA = Area(
    "postgres",
    commands=(pg_install, pg_list),
    settings=(("postgres", postgres_settings),),
    status_lines=(StatusLine(majors_line),),
)
