"""Preference data: what trainers read, derived from the raw records (`feedback.records`:
rankings and end users' votes) the store keeps.

Modules: `end_user_data` (votes turned into pairs and KTO rows), `pairs` (preference pairs and pair
files), `export` (pairs, TRL text, raw rankings and votes written out), `pair_source` (the
pairs a trainer reads: a pair file or a store), `groups` (ranked
groups for group-relative training), `agreement` (agreement between annotators).
Raw records become pairs only here, at export or training time.
"""
