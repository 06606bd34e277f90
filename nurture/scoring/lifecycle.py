"""Lifecycle automation: score thresholds promote leads (to mql, then sql), deals close them (customer, or
lost with the reason), and every move goes through ``change_stage`` with its cause.

What follows a move is the engine's: campaigns with ``on_stage`` triggers start from the stage history, and
exits and goals read it. Reaching sql notifies the owner through such a campaign (a ``notify`` step); see
docs/scoring.md for the one to load."""

from __future__ import annotations

from sqlalchemy.orm import Session

from nurture.clock import Clock
from nurture.leads.lifecycle import Stage
from nurture.leads.models import ActorKind, Lead, StageChange
from nurture.leads.service import Actor, change_stage
from nurture.scoring.config import ScoringSettings

SCORING_ACTOR = Actor(ActorKind.RULE, "scoring")
# A score never moves these: sales owns them, and a lost lead comes back through re-engagement.
_NOT_PROMOTED = frozenset({Stage.OPPORTUNITY, Stage.CUSTOMER, Stage.LOST})


def promotions_for(stage: Stage, score: int, settings: ScoringSettings) -> list[tuple[Stage, int]]:
    """The stages a lead in ``stage`` with ``score`` moves through, in order, with the threshold of each."""
    if stage in _NOT_PROMOTED:
        return []
    rank = stage.rank
    assert rank is not None
    moves = []
    for target, threshold in ((Stage.MQL, settings.mql_at), (Stage.SQL, settings.sql_at)):
        target_rank = target.rank
        assert target_rank is not None
        if threshold is not None and score >= threshold and rank < target_rank:
            moves.append((target, threshold))
    return moves


def promote_for_score(
    session: Session, clock: Clock, lead: Lead, score: int, settings: ScoringSettings, cause: str
) -> list[StageChange]:
    """Move ``lead`` forward for its score; each move names the threshold and what raised the score."""
    changes = []
    for target, threshold in promotions_for(lead.stage, score, settings):
        change = change_stage(
            session, clock, lead, target, reason=f"score {score} reached {threshold} ({cause})", actor=SCORING_ACTOR
        )
        if change is not None:
            changes.append(change)
    return changes


def close_deal(
    session: Session, clock: Clock, lead: Lead, *, won: bool, reason: str | None, actor: Actor
) -> StageChange | None:
    """deal_won makes a customer; deal_lost makes a lost lead, the reason kept in the stage history."""
    if won:
        return change_stage(session, clock, lead, Stage.CUSTOMER, reason=f"deal won{_suffix(reason)}", actor=actor)
    return change_stage(session, clock, lead, Stage.LOST, reason=f"deal lost{_suffix(reason)}", actor=actor)


def _suffix(reason: str | None) -> str:
    return f": {reason}" if reason else ""
