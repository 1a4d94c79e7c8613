"""User-facing errors.

Anything raised as a `GruqError` is a problem with what the user asked for (an
unknown task, a bad genome, a missing file). The command line prints it as one
line and exits with status 2; the app shows it as a message. Every other
exception is a bug.
"""


class GruqError(Exception):
    """A problem with the user's input, explained in one readable line."""
