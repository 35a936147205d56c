"""Usage and cost: one record per generation, succeeded or failed, in a pluggable sink.

imagen-core keeps records in a local SQLite file; a plugin offers another sink through the
``imagen_usage_sink`` hook (imagen-worker: PostgreSQL's ``mai.imagen_usage`` whenever a
database is configured).
"""

from imagen.usage.record import UsageRecord, usage_record
from imagen.usage.report import GROUPINGS, summarize
from imagen.usage.sink import UsageSink, default_usage_path, usage_sink

__all__ = [
    "GROUPINGS",
    "UsageRecord",
    "UsageSink",
    "default_usage_path",
    "summarize",
    "usage_record",
    "usage_sink",
]
