"""Preference data: what people said, kept raw, and what trainers read, derived from it.

Modules: `rankings` (a raw `Ranking`: who, when, the order with ties), `end_user` (an end
user's vote from a live app: the record the store, recorder and service share),
`end_user_data` (votes turned into pairs and KTO rows), `pairs` (preference pairs and pair
files), `export` (pairs, TRL text, raw rankings and votes written out), `pair_source` (the
pairs a trainer reads: a pair file or a store), `groups` (ranked
groups for group-relative training), `agreement` (agreement between annotators).
End users' votes live here, beside rankings, because they are the same kind of data: raw
preferences that become pairs at export time.
"""
