"""Where GRPO's ranked groups come from: a store's rankings, or every question in it scored by
its gold answers or by a trained reward model. Here in training, not beside the groups in
feedback, because the reward signal loads a reward model (feedback never imports training)."""
from __future__ import annotations

from rankact.agent.errors import RankactError
from rankact.alignment.feedback.preferences.groups import (
    RankedGroup,
    ranked_groups,
    scored_groups,
    task_score,
)
from rankact.alignment.feedback.store.trajectory_store import TrajectoryStore
from rankact.alignment.training.grpo_config import GroupSignal


def load_groups(db: str, signal: GroupSignal = "ranking", *, reward_model: str | None = None,
                source: str | None = None) -> list[RankedGroup]:
    """The groups a trainer reads from a store: its rankings, or every question scored by its
    gold answers or by a reward model."""
    with TrajectoryStore(db, create=False) as store:
        if signal == "ranking":
            groups = ranked_groups(store, source=source)
            if not groups:
                raise RankactError(f"no rankings of two or more trajectories in {db}: rank some first "
                                   "(or use --signal task with gold answers)")
            return groups
        if signal == "task":
            groups = scored_groups(store, task_score, "task")
        elif signal == "reward":
            if reward_model is None:
                raise RankactError("--signal reward needs --reward-model DIR (a trained reward model)")
            from rankact.alignment.training.reward.model import RewardModel  # torch: only for this signal

            model = RewardModel.load(reward_model)
            groups = scored_groups(store, lambda t, _gold: model.score_trajectory(t), "reward")
        else:
            raise RankactError(f"unknown signal {signal!r}: ranking, task or reward")
    if not groups:
        raise RankactError(f"no question in {db} has two or more trajectories: collect K >= 2 per question")
    return groups
