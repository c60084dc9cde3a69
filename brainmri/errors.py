"""One error type for bad input, and the wrapper that turns it into a one-line message."""

import functools
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path


class UserError(Exception):
    """Bad input the user can fix: printed as one line, exit code 2, no traceback."""


_resume_command: str | None = None  # what continues the current script's work after a Ctrl-C (set_resume_command)


def set_resume_command(script: str, args: list) -> None:
    """The command that continues this run once the script knows its folder (train.py's __file__, ["--resume",
    RUN]): the Ctrl-C message gives it, to be typed where the script was started: this interpreter ("python"
    where that is it), the script's path from here, paths in `args` absolute; quoted for this system's shell.
    Scripts without one leave it unset: rerunning the same command is the way."""
    global _resume_command
    here = os.path.relpath(script)
    python = shutil.which("python")
    interpreter = "python" if python and os.path.realpath(python) == os.path.realpath(sys.executable) else sys.executable
    words = [interpreter, script if here.startswith("..") else here,
             *(str(a.resolve()) if isinstance(a, Path) else str(a) for a in args)]
    _resume_command = subprocess.list2cmdline(words) if os.name == "nt" else shlex.join(words)


def cli_entry(main):
    """Run `main`, turning UserError (and Ctrl-C) into a one-line message and an exit code."""

    @functools.wraps(main)
    def wrapper(argv=None):
        global _resume_command
        _resume_command = None
        try:
            return main(argv)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            if _resume_command:
                print(f"interrupted: to continue, run: {_resume_command}", file=sys.stderr)
            else:
                print("interrupted: rerun the same command (nothing unfinished is kept as a result)", file=sys.stderr)
            return 130

    return wrapper
