"""The alignment layer, on top of the agent: sub-packages by concern.

| package | holds |
|---|---|
| `tasks/` | task files, the evaluation datasets and their indexes, bundled data |
| `feedback/` | collection, the trajectory store, rankings and preference data, demonstrations, the recorder, the ranking service |
| `evaluation/` | answer metrics, running agents over tasks into a report, intervals and paired tests, refusal rates |
| `training/` | one tokenization of trajectories, losses, the training runtime, the trainers |

and the modules that use them all: `demo` (the loop on the embedded defaults), `rounds` and
`rounds_report` (collect -> rank -> train -> evaluate, repeated), `errors` (this layer's branch
of the error tree), `output_file`.
"""
