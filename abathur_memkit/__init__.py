"""abathur-memkit: the memory layer for agent swarms on SQLite."""

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

__version__ = "0.1.0"

__all__ = [
    "AgentService",
    "AlreadyExistsError",
    "AuditService",
    "CheckpointService",
    "Database",
    "DatabaseFileError",
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
    "SessionService",
    "TaskService",
    "WritePolicy",
    "WritePolicyError",
    "__version__",
]
