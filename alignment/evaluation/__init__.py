"""Evaluation: answer metrics, running an agent over tasks into a report, and refusal rates."""
