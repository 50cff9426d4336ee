"""Expected failures: each carries a message fit to show a person, and an exit code."""


class DbopsError(Exception):
    """An error with a clear, secret-free message. Shown as-is in Slack and the terminal."""

    exit_code = 1


class UsageError(DbopsError):
    """Bad input: a wrong argument, an unknown id, a file that does not parse."""

    exit_code = 2


class ConfigError(DbopsError):
    """A missing or malformed setting; the message names it and says what to put there."""

    exit_code = 2


class TargetUnreachable(DbopsError):
    exit_code = 1


class JobBusy(DbopsError):
    """The same kind of job already runs on that target."""

    exit_code = 1


class Cancelled(DbopsError):
    """Someone asked the job (a backup, drill, restore or rehearsal) to stop; what it made is removed
    or, where it cannot be, the message says what is left."""

    exit_code = 1
