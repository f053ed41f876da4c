"""Errors shared by every camfleet command.

A UserError is something the user can fix (bad flag, bad config file, unreachable port): the CLI
prints its message on one line and exits non-zero, without a traceback.
"""


class UserError(Exception):
    """A problem with the user's input or environment, reported as one clear line."""

    exit_code = 2
