"""One base class for every error memkit raises on purpose.

Invalid input and missing rows raise subclasses that are also ``ValueError``,
the contract of the seed API, so ``except ValueError`` keeps working.
"""

from __future__ import annotations

__all__ = [
    "AlreadyExistsError",
    "DatabaseFileError",
    "EmbeddingError",
    "ExtensionError",
    "InvalidInputError",
    "InvalidTransitionError",
    "MemkitError",
    "MissingExtraError",
    "NotFoundError",
    "SchemaError",
    "WritePolicyError",
]


class MemkitError(Exception):
    """Base class of every memkit error."""


class InvalidInputError(MemkitError, ValueError):
    """An argument was malformed: bad namespace, status, JSON, dimension, ..."""


class NotFoundError(MemkitError, ValueError):
    """The row the call names does not exist."""


class AlreadyExistsError(MemkitError, ValueError):
    """The row the call would create exists already."""


class InvalidTransitionError(InvalidInputError):
    """A lifecycle move the state machine does not allow."""


class WritePolicyError(MemkitError, PermissionError):
    """The write policy forbids this writer from writing that namespace."""


class DatabaseFileError(MemkitError, ValueError):
    """The path is not a usable SQLite database (corrupt, not SQLite, unreadable)."""


class SchemaError(MemkitError):
    """The schema could not be created or migrated."""


class ExtensionError(MemkitError):
    """A SQLite extension could not be loaded."""


class EmbeddingError(MemkitError):
    """An embedder failed: server down, wrong dimensions, model missing."""


class MissingExtraError(MemkitError, ImportError):
    """A feature needs an optional extra that is not installed (names the pip command)."""
