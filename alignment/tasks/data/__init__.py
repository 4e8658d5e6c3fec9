"""Bundled demo data: a small original corpus about a fictional island, and its questions."""
