"""The trajectory store: questions, trajectories, rankings, end users' votes, accounts and
leases in one SQL database (SQLite by default, PostgreSQL by URL).

Modules: `trajectory_store` (`TrajectoryStore`, the public API), `tables` (the SQL tables,
the engine and migrations), `accounts`, `leases`, `rankings`, `end_user_votes` (one table
group each).
"""
