"""abathur-memkit: the memory layer for agent swarms on SQLite."""

from typing import TYPE_CHECKING

from .agents import AgentService
from .audit import AuditService
from .checkpoints import CheckpointService
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
from .memory import MemoryItem, MemoryService
from .metrics import MetricsService
from .namespaces import WritePolicy
from .sessions import SessionService
from .tasks import TaskService

if TYPE_CHECKING:
    from .search import SearchService
    from .search.documents import DocumentIndexService

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # Documents and search import numpy; load them only when asked for.
    if name == "DocumentIndexService":
        from .search.documents import DocumentIndexService

        return DocumentIndexService
    if name == "SearchService":
        from .search import SearchService

        return SearchService
    raise AttributeError(f"module 'abathur_memkit' has no attribute {name!r}")


__all__ = [
    "AgentService",
    "AlreadyExistsError",
    "AuditService",
    "CheckpointService",
    "Database",
    "DatabaseFileError",
    "DocumentIndexService",
    "EmbeddingError",
    "ExtensionError",
    "InvalidInputError",
    "InvalidTransitionError",
    "MemkitError",
    "MemoryItem",
    "MemoryService",
    "MetricsService",
    "NotFoundError",
    "SchemaError",
    "SearchService",
    "SessionService",
    "TaskService",
    "WritePolicy",
    "WritePolicyError",
    "__version__",
]
