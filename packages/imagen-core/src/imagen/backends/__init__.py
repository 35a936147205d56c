"""Backends that ship with imagen-core: the offline ``mock`` type."""
