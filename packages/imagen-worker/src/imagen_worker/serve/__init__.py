"""``imagen serve``: an OpenAI-compatible images API in front of the job queue.

Orchestration only: requests become rows in ``imagen.jobs`` (inserted with the caller's
identity, under the row-level security the schema defines), a worker does the work, and
the server reads the results back. Imported only by the ``serve`` command.
"""
