"""The one exception type that reaches users as a one-line message and exit code 2."""


class DistlawError(ValueError):
    """Bad input or an impossible request; its message is one line that names the problem and where."""


def check_workers(workers: int) -> None:
    """Refuse a count of worker processes below one (``--workers``, the API's ``workers``)."""
    if not (isinstance(workers, int) and workers >= 1):
        raise DistlawError(f"--workers must be >= 1, got {workers}")
