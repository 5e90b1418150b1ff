"""The data every Abathur database starts with (seed 004 §3.1).

Used by ``memkit demo`` and by the plugin's ``memkit_seeded_db``; one copy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .memory import MemoryService

__all__ = ["INITIAL_MEMORIES", "SEED_TASK_ID", "seed_initial_memories"]

#: The task_id of the seed's audit rows.
SEED_TASK_ID = "seed:initial_data"

#: Seed 004 §3.1: the application memories every Abathur database starts with.
INITIAL_MEMORIES: tuple[dict[str, Any], ...] = (
    {
        "namespace": "app:abathur:agent_instructions",
        "key": "default_workflow",
        "value": {
            "steps": [
                "Read and analyze task requirements",
                "Retrieve relevant context from memory",
                "Execute task with best practices",
                "Update session state and memory",
                "Log comprehensive audit trail",
            ],
            "error_handling": "Always provide detailed error messages and rollback on failure",
            "logging": "Comprehensive audit logging enabled",
        },
        "memory_type": "procedural",
        "created_by": "system",
    },
    {
        "namespace": "app:abathur:config",
        "key": "memory_lifecycle_policies",
        "value": {
            "episodic_ttl_days": 90,
            "semantic_permanent": True,
            "procedural_versioned": True,
            "consolidation_frequency": "weekly",
            "archival_after_days": 365,
        },
        "memory_type": "procedural",
        "created_by": "system",
    },
    {
        "namespace": "app:abathur:defaults",
        "key": "user_preference_template",
        "value": {
            "communication_style": "balanced",
            "technical_level": "intermediate",
            "response_length": "moderate",
            "code_comments": True,
        },
        "memory_type": "semantic",
        "created_by": "system",
    },
)


class HasMemory(Protocol):
    """What seeding needs: a ``Database`` (or anything with its ``memory`` service)."""

    @property
    def memory(self) -> MemoryService: ...


async def seed_initial_memories(db: HasMemory) -> list[int]:
    """Add the initial memories (the default workflow, the memory lifecycle
    policies, the user preference template), created by ``system``, each with
    its audit row, in one transaction; return the ids of those added.

    Idempotent: a key that is already live is left as it is (even if changed
    since), so seeding twice adds nothing.
    """
    from .errors import AlreadyExistsError
    from .memory import MemoryItem

    while True:
        missing = [MemoryItem(m["namespace"], m["key"], m["value"], m["memory_type"])
                   for m in INITIAL_MEMORIES
                   if await db.memory.get_memory(m["namespace"], m["key"]) is None]
        if not missing:
            return []
        try:
            return await db.memory.add_memories(missing, "system", task_id=SEED_TASK_ID)
        except AlreadyExistsError:
            continue  # another process seeded a key since the check: look again
