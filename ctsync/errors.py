"""The one exception type for errors a user can cause and fix."""


class CtsyncError(Exception):
    """A problem the user can act on: bad input, bad configuration, wrong region, ...

    The message says what went wrong and what to do about it. The CLI prints it
    without a traceback and exits with status 2.
    """


class WarehouseBusy(CtsyncError):
    """Another process is writing to the DuckDB file (one writer at a time); trying later may work."""
