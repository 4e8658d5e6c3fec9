"""End users' votes as training data.

- A choice becomes one preference pair (chosen over rejected), one per end user, like one
  annotator's ranking gives its own pairs.
- Thumbs and scores label each trajectory by majority over its end users: each user counts
  once (their latest vote), a score above 0 as up and below 0 as down, 0 not at all. More ups
  than downs: desirable; more downs: undesirable; a tie: no label (left out).
- Within one question, every desirable trajectory is preferred to every undesirable one: one
  pair per (up, down) trajectory, however many users voted.
- The same labels give the unpaired KTO set: `{prompt, completion, label}` per labelled
  trajectory, the format TRL's `KTOTrainer` reads (the other keys say where it came from).

Every pair carries `source="end-user"`, the `app` that relayed its votes and, in
`metadata.signal`, `choice` or `thumbs`. Thumbs are counted per app: one app's users (or
made-up users) never outvote, nor mix with, another app's.
"""
from __future__ import annotations

from collections.abc import Iterator

from pydantic import BaseModel

from rankact.agent.trajectory import Trajectory
from rankact.alignment.feedback.preferences.pairs import PreferencePair, prompt_and_response
from rankact.alignment.feedback.records.end_user import END_USER, EndUserFeedback


class TrajectoryLabel(BaseModel):
    trajectory_id: str
    question_id: str
    up: int    # end users whose vote is above 0
    down: int  # below 0

    @property
    def label(self) -> bool | None:
        """True desirable, False undesirable, None a tie (no label)."""
        return None if self.up == self.down else self.up > self.down


class KTORow(BaseModel):
    prompt: str
    completion: str
    label: bool
    question_id: str
    trajectory_id: str
    up: int
    down: int
    app: str | None = None


def by_app(votes: list[EndUserFeedback]) -> dict[str, list[EndUserFeedback]]:
    """Votes grouped by the app that relayed them, apps in name order."""
    groups: dict[str, list[EndUserFeedback]] = {}
    for vote in sorted(votes, key=lambda v: v.app):
        groups.setdefault(vote.app, []).append(vote)
    return groups


def trajectory_labels(votes: list[EndUserFeedback]) -> dict[str, TrajectoryLabel]:
    """Each scored trajectory's up and down counts, one vote per (app, end user)."""
    labels: dict[str, TrajectoryLabel] = {}
    for vote in votes:
        if vote.kind == "choice" or not vote.score:  # 0 is neutral
            continue
        label = labels.setdefault(vote.trajectory_id, TrajectoryLabel(
            trajectory_id=vote.trajectory_id, question_id=vote.question_id, up=0, down=0))
        if vote.score > 0:
            label.up += 1
        else:
            label.down += 1
    return labels


def vote_id_pairs(votes: list[EndUserFeedback], known: set[str] | dict) -> list[tuple[str, str, str, list[str]]]:
    """One question's end-user pairs as (chosen id, rejected id, signal, feedback ids): its
    choices, then its thumbs (desirable x undesirable). Trajectories not in `known` (damaged
    since) are skipped."""
    pairs = [(vote.chosen_id, vote.rejected_id, "choice", [vote.id]) for vote in votes
             if vote.kind == "choice" and vote.chosen_id in known and vote.rejected_id in known]
    labels = [label for label in trajectory_labels(votes).values() if label.trajectory_id in known]
    ups = sorted(label.trajectory_id for label in labels if label.label is True)
    downs = sorted(label.trajectory_id for label in labels if label.label is False)
    for up in ups:
        for down in downs:
            ids = sorted(v.id for v in votes if v.kind != "choice" and v.trajectory_id in (up, down))
            pairs.append((up, down, "thumbs", ids))
    return pairs


def pairs_from_votes(votes: list[EndUserFeedback], trajectories: dict[str, Trajectory],
                     question: str) -> list[PreferencePair]:
    """One question's end-user pairs with both trajectories whole (see `vote_id_pairs`), app by app."""
    pairs = []
    for app, app_votes in by_app(votes).items():
        by_id = {vote.id: vote for vote in app_votes}
        pairs += [
            PreferencePair(question_id=app_votes[0].question_id, question=question, chosen=trajectories[chosen],
                           rejected=trajectories[rejected], source=END_USER, app=app,
                           # a choice is one user's, like an annotator's ranking; thumbs pairs are a majority's
                           annotator=by_id[ids[0]].end_user if signal == "choice" else None,
                           metadata={"signal": signal, "feedback_ids": ids})
            for chosen, rejected, signal, ids in vote_id_pairs(app_votes, trajectories)
        ]
    return pairs


def kto_rows(votes: list[EndUserFeedback], trajectories: dict[str, Trajectory]) -> Iterator[KTORow]:
    for app, app_votes in by_app(votes).items():
        for label in trajectory_labels(app_votes).values():
            trajectory = trajectories.get(label.trajectory_id)
            if trajectory is None or label.label is None:
                continue
            prompt, completion = prompt_and_response(trajectory)
            yield KTORow(prompt=prompt, completion=completion, label=label.label, question_id=label.question_id,
                         trajectory_id=label.trajectory_id, up=label.up, down=label.down, app=app)
