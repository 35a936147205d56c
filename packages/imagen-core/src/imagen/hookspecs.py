"""Hook specifications: what an imagen plugin may implement.

A plugin is a module (or object) with functions decorated by :data:`imagen.hookimpl`,
published through the ``imagen`` entry-point group::

    [project.entry-points.imagen]
    myservice = "imagen_myservice.plugin"

imagen imports every such module when it starts, so plugin modules must import nothing
heavy: no upstream SDK, no HTTP client. Import those inside the backend factory.
Implementations may accept any subset of a hook's arguments, by name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import click

    from imagen.backend import BackendFactory
    from imagen.config import Config
    from imagen.output import SavedImage
    from imagen.pipeline import Outcome, Run
    from imagen.sections import Section
    from imagen.usage import UsageSink

hookspec = pluggy.HookspecMarker("imagen")


@hookspec
def imagen_backend() -> Mapping[str, BackendFactory]:
    """Offer backend types: map each type name to the factory that builds an instance.

    A type name is what users write as ``type:`` under ``backends:`` in ``imagen.yaml``.
    The factory is called with the instance's :class:`~imagen.BackendConfig` when imagen
    needs that instance, and returns a :class:`~imagen.Backend`; import the upstream SDK
    inside it, never at module level. Called once per process, when the backend types are
    first listed or used.

    :return: a mapping of type name to factory. Names must be unique across plugins; a
        clash is reported and the first plugin registered keeps the name.
    """


@hookspec
def imagen_config_sections() -> Iterable[Section]:
    """Declare the top-level sections of ``imagen.yaml`` that your plugin reads.

    Each :class:`~imagen.sections.Section` names its keys (type, default, meaning) and may
    check more (ranges, formats) in its ``parse``; imagen checks every section the same way
    whenever it loads the file, so a misspelt or mistyped key is an error naming the file,
    line and key, in ``imagen config check`` and every command alike. A top-level key that
    no loaded plugin declares is an error too. Read a section with
    ``config.section(name)`` (the value ``parse`` returned, or every key's value).

    Called once per process, when a config is first loaded; import the modules that hold
    the declarations inside the hook, not at the plugin module's top, when they are heavy.

    :return: the sections. Names must be unique across plugins; a clash is reported and the
        first plugin registered keeps the name.
    """


@hookspec
def imagen_register_commands(cli: click.Group) -> None:
    """Add commands to the ``imagen`` command line.

    Called once, while the CLI is being built, before arguments are parsed. Add commands
    with ``cli.add_command(...)`` or the ``@cli.command()`` decorator; keep their modules
    light and import heavy dependencies inside the command function.

    :param cli: the root ``imagen`` click group.
    """


@hookspec
def imagen_image_saved(image: SavedImage, run: Run) -> None:
    """Act on an image right after it and its sidecar were written: a pipeline step.

    Called once per image, in order, by every entry point that drives the pipeline
    (``imagen generate``, the worker). Cloud sync, for example, uploads here and records
    where it put the file with ``image.update_sidecar(...)``.

    A step that fails raises an :class:`~imagen.errors.ImagenError`: the image stays on
    disk, the other steps still run, and the caller is told the step failed.

    :param image: the saved image: its path, MIME type and sidecar record.
    :param run: the run it belongs to: config, backend instance, request, context.
    """


@hookspec
def imagen_run_finished(run: Run, outcome: Outcome | None, error: BaseException | None) -> None:
    """Act once a run is over, whether it succeeded or failed: a pipeline step.

    Called once per run, after every ``imagen_image_saved`` step and after its usage record
    was kept. The tmux preview hooks in here. Errors are handled as for ``imagen_image_saved``.

    :param run: the run.
    :param outcome: the saved images when the generation succeeded, else None.
    :param error: the error that ended the run when it failed, else None.
    """


@hookspec(firstresult=True)
def imagen_usage_sink(config: Config) -> UsageSink | None:
    """Offer the sink usage records go to, instead of the local SQLite file.

    Called when a run starts (and by ``imagen usage``), unless ``usage.record`` is false.
    Return None to leave the choice to other plugins; the first sink returned is used.
    imagen-worker returns its PostgreSQL sink (``mai.imagen_usage``) whenever a database
    is configured.

    :param config: the loaded configuration.
    :return: a :class:`~imagen.usage.UsageSink`, or None.
    """


@hookspec
def imagen_usage_sources(config: Config) -> Iterable[UsageSink]:
    """Offer more places usage records were kept, for ``imagen usage`` to read too.

    Called by ``imagen usage`` only (never by a run, which records to one sink): its report
    adds what these hold to what the sink holds, so that every generation counts, wherever
    it was recorded. imagen-worker returns the embedded PostgreSQL's ``mai.imagen_usage``
    when no database is configured and the embedded one exists, since its worker and
    ``imagen serve`` record there while ``imagen generate`` records to the SQLite file.

    :param config: the loaded configuration.
    :return: sinks to read (their ``records``); each is closed after reading.
    """
