"""The `kdstudy` command: `chain` (one chain, no Ray) and the study commands."""

from __future__ import annotations

import argparse
import signal
import sys

from cli import analysis_cmds, chain_cmd, run_cmd
from cli.errors import InputError, signal_exit_code

COMMANDS = (chain_cmd, run_cmd)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kdstudy", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(subparsers)
    analysis_cmds.add_parsers(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except InputError as error:  # bad input, whichever layer found it: one line naming the field
        print(f"kdstudy {args.command}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a second Ctrl-C, or one before the study's own handler is in place
        print(f"kdstudy {args.command}: interrupted", file=sys.stderr)
        return signal_exit_code(signal.SIGINT)


if __name__ == "__main__":
    sys.exit(main())
