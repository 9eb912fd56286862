"""Datasets: preparation of the official formats and the built-in synthetic one."""
