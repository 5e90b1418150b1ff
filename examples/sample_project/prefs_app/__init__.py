"""User preferences stored as abathur-memkit memories (namespace ``user:<id>:preferences``)."""

from __future__ import annotations

from typing import Any

__all__ = ["get_preference", "preference_template", "set_preference"]


def _namespace(user_id: str) -> str:
    return f"user:{user_id}:preferences"


async def set_preference(db: Any, user_id: str, key: str, value: Any) -> int:
    """Store a preference; a second write makes a new version."""
    if await db.memory.get_memory(_namespace(user_id), key) is None:
        return int(await db.memory.add_memory(_namespace(user_id), key, value, "semantic", user_id))
    return int(await db.memory.update_memory(_namespace(user_id), key, value, user_id))


async def get_preference(db: Any, user_id: str, key: str, default: Any = None) -> Any:
    """The latest value, else the app-wide template's, else ``default``."""
    memory = await db.memory.get_memory(_namespace(user_id), key)
    if memory is not None:
        return memory["value"]
    template = await preference_template(db)
    return template.get(key, default)


async def preference_template(db: Any) -> dict[str, Any]:
    """The defaults every Abathur database is seeded with."""
    memory = await db.memory.get_memory("app:abathur:defaults", "user_preference_template")
    return dict(memory["value"]) if memory else {}
