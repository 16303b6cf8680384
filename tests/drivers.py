"""`kdstudy` commands in processes of their own, without paying each process's start.

`python -m cli.main …` spends seconds before it does anything: importing torch and Ray, parsing the embedded data
set, importing what counting FLOPs needs. A command here is forked instead from one server process that did all
that once (multiprocessing's fork server, preloading tests/driver_server.py). It is still a process of its own,
leader of a session of its own (a process group the test can signal, as Popen's `start_new_session`), with the
environment, working folder and console it is given, and it ends as the interpreter does: exit code, atexit
handlers (Ray's disconnect) and all.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import traceback
import weakref
from pathlib import Path

_SERVER = multiprocessing.get_context("forkserver")
_SERVER.set_forkserver_preload(["tests.driver_server"])


class Driver:
    """A running `kdstudy` command, read like a `subprocess.Popen` with stdout and stderr piped (text)."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self._console = Path(tempfile.mkdtemp(prefix="kdstudy-driver-"))
        weakref.finalize(self, shutil.rmtree, self._console, ignore_errors=True)
        self._out, self._err = self._console / "stdout", self._console / "stderr"
        self._process = _SERVER.Process(target=_command, args=(argv, env, str(cwd), str(self._out), str(self._err)))
        self._process.start()
        self.pid = self._process.pid
        self._printed: tuple[str, str] | None = None

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode

    def poll(self) -> int | None:
        return self._process.exitcode

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        """Waits for the command to end; its stdout and stderr."""
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired(["kdstudy"], timeout or 0)
        if self._printed is None:
            self._printed = self._out.read_text(), self._err.read_text()
        return self._printed


def _command(argv: list[str], env: dict[str, str], cwd: str, out: str, err: str) -> None:
    """The forked process: `python -m cli.main argv` from here on, in `env` and `cwd`, printing to `out`/`err`."""
    os.setsid()
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    for fd, path in ((1, out), (2, err)):
        console = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(console, fd)
        os.close(console)
    # line-buffered, so a killed command leaves every line it printed (as PYTHONUNBUFFERED did)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    from cli.main import main

    try:
        code = main(argv)
    except SystemExit as exit_:  # as the interpreter turns one into an exit status
        code = 0 if exit_.code is None else exit_.code if isinstance(exit_.code, int) else 1
    except BaseException:
        traceback.print_exc()
        code = 1
    atexit._run_exitfuncs()  # the interpreter's exit runs them; os._exit (and multiprocessing's exit) would not
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
