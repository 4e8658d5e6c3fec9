"""Feedback: everything between a recorded trajectory and the pairs a trainer reads.

Sub-packages, in the order the data moves:

| package | holds |
|---|---|
| `collection` | runs the agent on tasks into the store, the simulated annotator, sample data |
| `recorder` | records the trajectories and votes of a live application (spool, targets) |
| `records` | what people produce, as the store keeps it: rankings and end users' votes |
| `store` | the trajectory store, one SQL database (SQLite or PostgreSQL) |
| `service` | the JSON API and the ranking page people rank through |
| `preferences` | preference data derived from the records: pairs, exports, ranked groups, agreement |
| `demonstrations` | written demonstrations, ones written from gold answers, written refusals |

Arrows inside point one way: `service`, `collection`, `recorder` -> `preferences`,
`demonstrations` -> `store` -> `records`; feedback never imports training.
"""
