"""How dbops runs client programs (pg_dump, pg_restore, pg_amcheck): an environment with the
connection and nothing of the bot's, stopped whole (their -j workers too), private files, and never
outliving the thread that started them. Exercised with ordinary programs (sh, sleep, env), which
handlers.postgres.client starts exactly as it starts the PostgreSQL tools."""
from __future__ import annotations

import os
import signal
import stat
import subprocess
import threading
from pathlib import Path

import pytest

from handlers.errors import Cancelled
from handlers.postgres import exit_text, libpq_env, run_streaming, start_tool, stop_tool


def _gone(pid: int) -> bool:
    """Exited: no such process, or a zombie waiting for whoever adopted it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def test_a_client_program_gets_the_connection_and_none_of_the_bots_secrets(monkeypatch):
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-bot-token-1")
    monkeypatch.setenv("DATABASE_URL", "postgresql://prod:prod-pw-2@db/prod")
    monkeypatch.setenv("DBOPS_BACKUP_KEY", "backup-key-3")
    monkeypatch.setenv("PGPASSWORD", "inherited-pw-4")
    monkeypatch.setenv("HOME", "/home/dbops-test")
    done = run_streaming(["/usr/bin/env"], libpq_env("postgresql://app:app-pw-5@dbhost:6543/notes"))
    seen = dict(line.split("=", 1) for line in done.lines if "=" in line)
    assert seen["PGPASSWORD"] == "app-pw-5" and seen["PGHOST"] == "dbhost" and seen["PGPORT"] == "6543"
    assert seen["HOME"] == "/home/dbops-test" and seen["LC_ALL"] == "C"
    text = "\n".join(done.lines)
    for secret in ("xoxb-bot-token-1", "prod-pw-2", "backup-key-3", "inherited-pw-4"):
        assert secret not in text
    assert not {"SLACK_BOT_TOKEN", "DATABASE_URL", "DBOPS_BACKUP_KEY"} & set(seen)


def test_stopping_a_program_stops_its_workers_too():
    proc = start_tool(["/bin/sh", "-c", "sleep 300 & echo $!; sleep 300 & echo $!; wait"], libpq_env(""),
                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    workers = [int(proc.stdout.readline()), int(proc.stdout.readline())]
    assert not any(_gone(pid) for pid in workers)
    stop_tool(proc, grace_s=5)
    assert proc.returncode == -15
    for pid in workers:
        for _ in range(100):  # SIGTERM is delivered; the exit itself takes the kernel a moment
            if _gone(pid):
                break
            threading.Event().wait(0.05)
        assert _gone(pid), pid


def test_a_program_that_ignores_sigterm_is_killed():
    proc = start_tool(["/bin/sh", "-c", "trap '' TERM; echo ready; while :; do sleep 1; done"], libpq_env(""),
                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout.readline().strip() == "ready"
    stop_tool(proc, grace_s=0.5)
    assert proc.returncode == -9
    assert exit_text("pg_dump", proc.returncode) == "pg_dump was killed (SIGKILL)"
    assert exit_text("pg_dump", 1) == "pg_dump exited with status 1"


def test_cancelling_a_streamed_program_stops_it_and_its_workers():
    cancel = threading.Event()
    workers: list[int] = []

    def on_line(line: str) -> None:
        workers.append(int(line))
        cancel.set()

    with pytest.raises(Cancelled, match="cancelled while sh ran"):
        run_streaming(["/bin/sh", "-c", "sleep 300 & echo $!; wait"], libpq_env(""), on_line=on_line,
                      cancel=cancel)
    for _ in range(100):
        if _gone(workers[0]):
            break
        threading.Event().wait(0.05)
    assert _gone(workers[0])


def test_a_program_dies_with_the_thread_that_started_it():
    box: dict = {}
    started = threading.Thread(target=lambda: box.update(proc=start_tool(
        ["/bin/sleep", "300"], libpq_env(""), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
    started.start()
    started.join()
    proc = box["proc"]
    try:
        assert proc.wait(30) == -15  # the kernel's parent-death signal, not a timer of ours
    finally:
        stop_tool(proc)


def test_what_a_program_writes_is_private_from_its_first_byte(tmp_path):
    before = os.umask(0o022)  # the bot's own, permissive umask
    try:
        done = run_streaming(["/bin/sh", "-c", "echo data > archive; mkdir folder"], libpq_env(""),
                             cwd=str(tmp_path))
    finally:
        os.umask(before)
    assert done.returncode == 0
    assert stat.S_IMODE((tmp_path / "archive").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "folder").stat().st_mode) == 0o700


def test_a_ctrl_c_during_the_fork_is_this_process_s_and_the_program_keeps_sigint_blocked():
    proc = start_tool(["/bin/sleep", "300"], libpq_env(""), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        status = Path(f"/proc/{proc.pid}/status").read_text()
        blocked = int(next(line for line in status.splitlines() if line.startswith("SigBlk:")).split()[1], 16)
        assert blocked & (1 << (signal.SIGINT - 1))  # a group's SIGINT while it was still Python waits unseen
        assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, set())  # ours is restored
    finally:
        stop_tool(proc)
