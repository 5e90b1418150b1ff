"""``from abathur.infrastructure.database import Database`` as the seed code writes it."""

from abathur_memkit import Database

__all__ = ["Database"]
