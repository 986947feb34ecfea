"""The one exception type users see: a one-line message, printed by the CLI, exit code 1."""


class CxrError(Exception):
    """A user-facing error. Its message names the file or option at fault and fits on one line."""
