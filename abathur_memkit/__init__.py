"""abathur-memkit: the memory layer for agent swarms on SQLite."""

from .database import Database
from .errors import (
    AlreadyExistsError,
    DatabaseFileError,
    EmbeddingError,
    ExtensionError,
    InvalidInputError,
    InvalidTransitionError,
    MemkitError,
    NotFoundError,
    SchemaError,
    WritePolicyError,
)

__version__ = "0.1.0"

__all__ = [
    "AlreadyExistsError",
    "Database",
    "DatabaseFileError",
    "EmbeddingError",
    "ExtensionError",
    "InvalidInputError",
    "InvalidTransitionError",
    "MemkitError",
    "NotFoundError",
    "SchemaError",
    "WritePolicyError",
    "__version__",
]
