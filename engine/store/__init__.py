"""The journal (engine/store): SQLite by default, PostgreSQL when WASLA_STORE_URL=postgresql://…"""

from engine.store.journal import Journal, MessageRow, OutputRow, Pruned, mapping_warnings, open_journal

__all__ = ["Journal", "MessageRow", "OutputRow", "Pruned", "mapping_warnings", "open_journal"]
