"""One error type for bad input, and the wrapper that turns it into a one-line message."""

import functools
import sys


class UserError(Exception):
    """Bad input the user can fix: printed as one line, exit code 2, no traceback."""


def cli_entry(main):
    """Run `main`, turning UserError (and Ctrl-C) into a one-line message and an exit code."""

    @functools.wraps(main)
    def wrapper(argv=None):
        try:
            return main(argv)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted: rerun with --resume to continue", file=sys.stderr)
            return 130

    return wrapper
