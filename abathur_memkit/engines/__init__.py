"""Database engines: one folder per engine, each behind ``engines.interface``."""
