"""The exception every layer raises for input a user can fix (a file, a flag, a config field).

It lives apart from `sslsr.cli`, which defines absl flags on import, so that library code can
raise it without registering flags in its callers' programs.
"""


class UserError(Exception):
    """A problem with the caller's input; the message names the file or field first."""
