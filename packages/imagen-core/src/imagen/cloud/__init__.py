"""Cloud sync: each saved image uploaded to Supabase Storage, and recorded in ``imagen.images``.

Configured by the ``cloud:`` section (:mod:`imagen.cloud.settings`); needs the ``cloud``
extra (``pip install 'imagen-core[cloud]'``). Importing this package imports nothing: the
step (:mod:`imagen.cloud.plugin`) loads with every plugin, and supabase-py only when a
sync runs (:mod:`imagen.cloud.store`).
"""
