"""Collection: filling the store with trajectories to rank, and ranking them without people.

Modules: `collect` (runs the agent K times per task into the store, resumable), `simulated`
(an annotator that ranks by a score against the gold answers), `sample_data` (a small
bundled set of questions and trajectories for demos and tests). They sit together because
each produces store content; none of them is needed to read it back.
"""
