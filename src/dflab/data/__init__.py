"""Data: dataset adapters (official layouts), ``dflab prepare`` and the SQLite face manifest."""
