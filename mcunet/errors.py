"""The one exception type users see: a readable message, exit code 2, no traceback."""


class McunetError(Exception):
    """Bad input or an impossible request. The message says what is wrong and what to do."""

    exit_code = 2
