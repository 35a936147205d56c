"""The history: a local index of every image imagen made, for ``imagen history`` and ``open``.

Fed by a pipeline step (:mod:`imagen.history.plugin`), so ``imagen generate``, the worker
and ``imagen serve --with-worker`` all record to it; kept in one SQLite file
(:mod:`imagen.history.index`).
"""
