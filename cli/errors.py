"""How the CLI ends badly: the one bad-input error it turns into a one-line message and exit code 2
(`trainables.typed.InputError`, raised alike by config, method settings, data, models and the study spec), and the
exit code of a signal."""

from trainables.typed import InputError

__all__ = ["InputError", "signal_exit_code"]


def signal_exit_code(signum: int) -> int:
    """The shell's convention: 128 + the signal's number (130 for SIGINT, 143 for SIGTERM)."""
    return 128 + signum
