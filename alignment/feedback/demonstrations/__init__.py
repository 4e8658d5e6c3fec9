"""Demonstrations: trajectories written by people or from gold answers instead of sampled.

Modules: `recording` (the `Demonstration` format and recording one through the agent so its
token ids are exact), `lookup` (demonstrations written from gold answers: search with the
question, answer with the gold), `refusal` (written refusals of harmful DEV requests), `replay_examples` (the plain
request-and-reply format written refusals and the trainers' replay term share).
"""
