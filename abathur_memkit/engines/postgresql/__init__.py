"""The PostgreSQL engine: psycopg 3, psycopg-pool, pgvector (``abathur-memkit[postgres]``)."""

from __future__ import annotations

from .engine import PostgreSQLEngine

__all__ = ["PostgreSQLEngine"]
