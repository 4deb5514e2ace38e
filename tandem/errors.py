"""Errors a person can act on.

Every error Tandem raises on bad input is a ``TandemError`` whose message is one
line naming the file, table, column or peer at fault. The CLI prints that line
and exits non-zero, without a traceback.
"""


class TandemError(Exception):
    """Base class of errors the CLI reports as one line."""


class StoreError(TandemError):
    """A party store cannot be opened, read or written."""


class SchemaError(StoreError):
    """A table or column is missing or has the wrong type."""


class InputError(TandemError, ValueError):
    """An argument or input file is unusable."""
