"""User-facing errors.

Anything raised as a `GruqError` is a problem with what the user asked for (an
unknown task, a bad genome, a missing file). The command line prints it as one
line and exits with status 2; the app shows it as a message. Every other
exception is a bug.
"""


class GruqError(Exception):
    """A problem with the user's input, explained in one readable line."""


class SettingError(GruqError):
    """A search setting that cannot work, with the facts behind the refusal.

    `str()` is the command line's wording (it names the flag); `setting` names
    the SearchConfig field and `facts` hold the numbers, so another front end
    (the app's form) can word the same refusal for its own fields instead of
    rewriting this text.
    """

    def __init__(self, message: str, setting: str, **facts: object) -> None:
        super().__init__(message)
        self.setting = setting
        self.facts = facts
