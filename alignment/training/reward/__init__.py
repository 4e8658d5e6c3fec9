"""Reward model: a causal LM backbone with a scalar head, trained with the Bradley-Terry loss
on preference pairs (the second step of RLHF). Heavy imports (torch, transformers) live in
the submodules, so importing this package is cheap."""
