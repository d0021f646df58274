"""The exceptions every layer raises for input a user can fix (a file, a flag, a config field).

They live apart from `sslsr.cli`, which defines absl flags on import, so that library code can
raise them without registering flags in its callers' programs.
"""


class UserError(Exception):
    """A problem with the caller's input; the message names the file or field first."""


class InputError(UserError, ValueError):
    """Bad input data (an unreadable image, a mask of the wrong size, an empty folder).

    Also a ValueError, so library callers that catch ValueError keep working; the CLIs report it
    as one line like every UserError.
    """
