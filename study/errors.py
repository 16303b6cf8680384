"""How the CLI ends badly: the one error type it turns into a one-line message and exit code 2, and the exit code
of a signal."""


class UsageError(ValueError):
    """Bad input from the user; the message is one line that starts with the offending field."""


def signal_exit_code(signum: int) -> int:
    """The shell's convention: 128 + the signal's number (130 for SIGINT, 143 for SIGTERM)."""
    return 128 + signum
