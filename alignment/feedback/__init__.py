"""Feedback: everything between a recorded trajectory and the pairs a trainer reads.

In the order the data moves: `collect` runs the agent and puts trajectories in the `store`;
people rank them through the `service` (or the `simulated` annotator does); a `Ranking`
(`rankings`) is kept raw; `pairs` derives preference pairs from rankings and reads and writes
pair files; `export` writes pairs, TRL text or raw rankings; `agreement` measures annotators.
"""
