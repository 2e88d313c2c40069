"""The one exception type that reaches users as a one-line message and exit code 2."""


class DistlawError(ValueError):
    """Bad input or an impossible request; its message is one line that names the problem and where."""
