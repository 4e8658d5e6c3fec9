"""What rounds report per round: the record, the collapse monitors computed from held-out runs,
the one-line summary and the plot. The loop that fills them is `rankact.alignment.rounds`."""
from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, Field

from rankact.agent.trajectory import Trajectory


class RoundRecord(BaseModel):
    round: int
    policy: str
    success: float
    success_low: float
    success_high: float
    em: float
    p_value: float | None = None  # exact McNemar on success against round 0
    tool_call_rate: float  # held-out runs that called a tool at least once
    repeated_action_rate: float  # actions that repeat the step before them, same tool and input
    mean_tokens: float
    kl: float | None = None  # training's last per-token KL to the round's starting policy
    # out of distribution (--heldout-ood): success with its interval, McNemar p against round 0
    success_ood: float | None = None
    success_ood_low: float | None = None
    success_ood_high: float | None = None
    p_value_ood: float | None = None
    # what the policy writes (rankact.alignment.evaluation.collapse), over every held-out run
    distinct_thought_ratio: float | None = None
    thought_entropy: float | None = None
    template_spread: float | None = None  # best template's success minus the worst's
    collected: int = 0
    train_seconds: float = 0.0
    warnings: list[str] = Field(default_factory=list)


def behaviour(trajectories: list[Trajectory]) -> tuple[float, float]:
    """(tool-call rate, repeated-action rate) of held-out runs: the collapse monitors."""
    if not trajectories:
        return 0.0, 0.0
    calling = sum(1 for t in trajectories if t.tool_calls > 0) / len(trajectories)
    actions = repeats = 0
    for t in trajectories:
        previous = None
        for step in t.steps:
            if step.action is None:
                previous = None
                continue
            key = (step.action, json.dumps(step.action_input, sort_keys=True, default=str))
            actions += 1
            repeats += key == previous
            previous = key
    return calling, repeats / actions if actions else 0.0


def summary_line(record: RoundRecord) -> str:
    p = "" if record.p_value is None else f", McNemar p {record.p_value:.3g} vs round 0"
    kl = "" if record.kl is None else f", KL {record.kl:.3f}"
    ood = ""
    if record.success_ood is not None:
        p_ood = "" if record.p_value_ood is None else f", p {record.p_value_ood:.3g}"
        ood = (f"; out of distribution {record.success_ood:.0%} [{record.success_ood_low:.0%}, "
               f"{record.success_ood_high:.0%}]{p_ood}")
    thoughts = "" if record.distinct_thought_ratio is None else \
        f", distinct thoughts {record.distinct_thought_ratio:.0%}"
    return (f"round {record.round}: held-out success {record.success:.0%} [{record.success_low:.0%}, "
            f"{record.success_high:.0%}]{p}{ood}; tool calls {record.tool_call_rate:.0%}, repeated actions "
            f"{record.repeated_action_rate:.0%}{thoughts}, {record.mean_tokens:.0f} tokens{kl}")


def plot_rounds(records: list[RoundRecord], path: Path) -> None:
    """report.png: held-out success with its interval, the behaviour monitors, KL per round."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = [r.round for r in records]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    axes[0].errorbar(rounds, [r.success for r in records],
                     yerr=[[r.success - r.success_low for r in records], [r.success_high - r.success for r in records]],
                     marker="o", capsize=3)
    ood = [r for r in records if r.success_ood is not None]
    if ood:
        axes[0].errorbar([r.round for r in ood], [r.success_ood for r in ood],
                         yerr=[[r.success_ood - r.success_ood_low for r in ood],
                               [r.success_ood_high - r.success_ood for r in ood]],
                         marker="s", capsize=3, label="out of distribution")
        axes[0].legend(["in distribution", "out of distribution"])
    axes[0].set_title("held-out success (95% CI)")
    axes[1].plot(rounds, [r.tool_call_rate for r in records], marker="o", label="tool calls")
    axes[1].plot(rounds, [r.repeated_action_rate for r in records], marker="o", label="repeated actions")
    if any(r.distinct_thought_ratio is not None for r in records):
        axes[1].plot([r.round for r in records if r.distinct_thought_ratio is not None],
                     [r.distinct_thought_ratio for r in records if r.distinct_thought_ratio is not None],
                     marker="o", label="distinct thoughts")
    axes[1].legend()
    axes[1].set_title("behaviour on held-out runs")
    axes[2].plot([r.round for r in records if r.kl is not None], [r.kl for r in records if r.kl is not None],
                 marker="o")
    axes[2].set_title("KL to the round's reference")
    for ax in axes:
        ax.set_xlabel("round")
        ax.set_xticks(rounds)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
