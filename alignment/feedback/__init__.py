"""Feedback: everything between a recorded trajectory and the pairs a trainer reads.

Sub-packages, in the order the data moves:

- `collection`: runs the agent on tasks and puts trajectories in the store (`collect`), ranks
  them by a scoring rule (`simulated` annotator), and ships sample data (`sample_data`).
- `recorder`: records the trajectories and votes of a live application (`recorder`, `spool`,
  `targets`).
- `store`: the trajectory store, one SQL database (`trajectory_store`, composed of `accounts`,
  `leases`, `rankings`, `end_user_votes` on `tables`, `database`, `migrations`, `questions`).
- `service`: the JSON API and ranking page people rank through.
- `records`: what people produce, as the store keeps it: rankings (`rankings`) and end users'
  votes (`end_user`).
- `preferences`: the preference data derived from the records: end users' votes as training
  data (`end_user_data`), pairs and pair files (`pairs`), exports (`export`), the
  pairs a trainer reads (`pair_source`), ranked groups (`groups`) and agreement between
  annotators (`agreement`).
- `demonstrations`: written demonstrations (`recording`), ones written from gold answers
  (`lookup`), written refusals (`refusal`), and the request-and-reply format they share with
  the trainers' replay (`replay_examples`).
"""
