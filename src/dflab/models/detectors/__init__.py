"""Explicit imports of every detector file; importing this fills ``DETECTORS`` and ``VARIANTS``."""
