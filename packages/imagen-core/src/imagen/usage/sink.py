"""Where usage records go: the sink interface, the ``usage:`` settings, and the choice."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from imagen.dirs import data_dir
from imagen.usage.settings import USAGE

if TYPE_CHECKING:
    from imagen.config import Config
    from imagen.usage.budget import Cap
    from imagen.usage.record import UsageRecord

__all__ = ["USAGE", "UsageSink", "default_usage_path", "usage_sink"]


class UsageSink(ABC):
    """A place usage records go to and are read back from."""

    #: What ``imagen usage`` says it read, e.g. ``SQLite file ~/.local/share/…``.
    description: str = ""

    @abstractmethod
    def record(self, record: UsageRecord) -> None:
        """Keep one record; raise :class:`~imagen.errors.ImagenError` when that fails."""

    @abstractmethod
    def records(self, since: datetime | None, until: datetime | None) -> list[UsageRecord]:
        """The records with ``since <= at < until`` (either bound may be open), oldest first."""

    def reserve(self, caps: Sequence[Cap], hold: UsageRecord, estimate: float) -> Any:
        """Hold ``estimate`` against ``caps`` for a run about to call its backend.

        Atomic with every other process holding or recording against the same sink: check
        each cap (:func:`~imagen.usage.budget.check_caps`, counting what was spent and what
        running generations hold) and keep ``hold`` (status ``reserved``, ``cost_usd`` the
        estimate) in one step, so concurrent runs cannot overshoot a cap together.
        Return a handle for :meth:`settle`.

        :raises BudgetExceededError: a cap would be crossed; nothing is held.
        """
        from imagen.errors import ConfigError

        raise ConfigError(
            f"usage.budget: the usage sink ({self.description}) cannot hold reservations"
        )

    def settle(self, handle: Any, record: UsageRecord) -> None:
        """Replace the reservation ``handle`` with the run's final ``record``."""
        raise NotImplementedError

    def close(self) -> None:  # noqa: B027 (most sinks hold nothing open)
        """Release connections; the sink is not used afterwards."""


def default_usage_path(environ: Mapping[str, str] = os.environ) -> Path:
    """``$XDG_DATA_HOME/imagen/usage.sqlite3`` (``~/.local/share/imagen/usage.sqlite3``)."""
    return data_dir(environ) / "usage.sqlite3"


@overload
def usage_sink(config: Config, fallback: UsageSink | None = None) -> UsageSink | None: ...
@overload
def usage_sink(
    config: Config, fallback: UsageSink | None = None, *, reading: Literal[True]
) -> UsageSink: ...
def usage_sink(
    config: Config, fallback: UsageSink | None = None, *, reading: bool = False
) -> UsageSink | None:
    """The sink for ``config``'s usage records.

    None when ``usage.record`` is false (unless ``reading``: records kept before still
    count); else the sink a plugin offers, else ``fallback``, else the local SQLite file
    (``usage.path``).
    """
    settings = config.section_values("usage", USAGE)
    if not settings["record"] and not reading:
        return None
    from imagen.plugins import get_plugin_manager

    offered = get_plugin_manager().hook.imagen_usage_sink(config=config)
    if offered is not None:
        return offered
    if fallback is not None:
        return fallback
    from imagen.usage.sqlite import SqliteUsageSink

    path = settings["path"]
    return SqliteUsageSink(
        Path(os.path.expandvars(path)).expanduser() if path else default_usage_path()
    )
