"""OpenAI Images backend for imagen."""

__version__ = "0.1.0"
