"""The trajectory store: questions, trajectories, rankings, end users' votes, accounts and
leases in one SQL database (SQLite by default, PostgreSQL by URL).

Modules: `trajectory_store` (`TrajectoryStore`, the public API: questions and trajectories,
composed of the parts below), `questions` (the `Question` record and question ids), `tables`
(the SQL tables and the queries several parts share), `database` (the engine and `Database`,
the sessions every part shares), `migrations` (earlier schema versions), and one module per
table group: `accounts`, `leases`, `rankings`, `end_user_votes`. No part imports another's
private names: what they share is public in `tables` and `database`.
"""
