"""Benchmark protocols. Each module adds one ``harmovid bench NAME`` command through ``register``."""
