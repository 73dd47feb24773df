"""Errors the CLI turns into one-line messages and defined exit codes."""


class DiffbenchError(Exception):
    """Bad usage, bad config or bad input: the CLI prints the message and exits with 2."""

    exit_code = 2


class StorageError(DiffbenchError):
    """The harness could not write something (disk full, permissions): never a method's error
    row; the CLI exits 2 naming the path."""
