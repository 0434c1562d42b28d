"""How one propagation run takes part in the job claim protocol (``memory_store/jobs.py``).

Every executor of a propagation (the job runner, ``memrec worker``, a LangGraph server background
run, a replay of one, a direct graph call) goes through :func:`claim_for_run`: a runner passes the
claim it already holds; a run started without one claims its interaction's job itself. Only the
holder runs; everyone else stops before the model call and writes nothing.

Under the claim, :func:`fixed_fanout` returns the neighbours chosen the first time the job ran
(choosing and storing them now when none are stored), and :func:`stored_answer` the model answer
kept by an earlier attempt, so a retry writes the same patches to the same records.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from memory_store.events import EventLog
from memory_store.jobs import ClaimOutcome, JobRow

logger = logging.getLogger(__name__)

LEASE_S = 60.0
Fanout = list[tuple[str, float]]


@dataclass(frozen=True)
class RunClaim:
    """The claim a propagation run holds (or why it holds none)."""

    outcome: ClaimOutcome
    owner: str | None  # the lease owner the run writes under; None: it must not run
    job: JobRow | None  # the job as claimed (fan-out and answer of earlier attempts)
    self_claimed: bool = False  # claimed by the run itself, not handed over by a runner

    @property
    def may_run(self) -> bool:
        """Whether this run may call the model and write (it holds the job, or none exists)."""
        return self.outcome in ("claimed", "held", "missing")

    @property
    def refusal(self) -> str | None:
        """Why the run must stop, in words for the report, or None."""
        if self.may_run:
            return None
        reasons = {
            "busy": "another executor holds this job (its lease is live): nothing done here",
            "done": "this job is done already (a replay or a second executor): nothing done",
            "failed": "this job is parked as failed; `memrec jobs --retry` releases it",
        }
        return reasons.get(self.outcome, f"job not claimable ({self.outcome})")


def run_owner(lease_owner: str | None, run_id: str | None) -> str:
    """The lease owner of a run: the runner's, else one named after the LangGraph run."""
    if lease_owner:
        return lease_owner
    return f"run:{run_id}" if run_id else f"graph:{uuid.uuid4().hex}"


def claim_for_run(
    events: EventLog,
    interaction_id: str,
    owner: str,
    lease_s: float = LEASE_S,
    *,
    self_claimed: bool = True,
) -> RunClaim:
    """Claim (or confirm) the interaction's job for ``owner``.

    An interaction with no job (an event handed in full that the log does not have) runs without
    a claim: there is no job another executor could run.
    """
    outcome = events.claim(interaction_id, owner, lease_s)
    if outcome == "missing":
        return RunClaim("missing", None, None)
    if outcome not in ("claimed", "held"):
        logger.info("propagation of %s not run by %s: job %s", interaction_id, owner, outcome)
        return RunClaim(outcome, None, None)
    return RunClaim(outcome, owner, events.get_job(interaction_id), self_claimed)


def fixed_fanout(
    events: EventLog, claim: RunClaim, interaction_id: str, choose: Callable[[], Fanout]
) -> Fanout:
    """The job's fan-out: the stored one, else ``choose()`` stored now (first writer wins)."""
    if claim.job is not None and claim.job.fanout is not None:
        return [(str(ref), float(score)) for ref, score in claim.job.fanout]
    chosen = choose()
    if claim.owner is None:
        return chosen
    stored = events.save_fanout(interaction_id, claim.owner, chosen)
    return chosen if stored is None else stored


def stored_answer(claim: RunClaim) -> dict[str, Any] | None:
    """The model answer an earlier attempt of this job kept, or None."""
    return claim.job.result if claim.job is not None else None


def keep_answer(
    events: EventLog, owner: str | None, interaction_id: str, answer: dict[str, Any]
) -> dict[str, Any]:
    """Store the model's answer with the job (first writer wins); the answer to write from."""
    if owner is None:
        return answer
    stored = events.save_result(interaction_id, owner, answer)
    return answer if stored is None else stored


def release_after_error(
    events: EventLog, owner: str | None, own_claim: bool, interaction_id: str, error: BaseException
) -> None:
    """A run that claimed its job itself hands it back when it fails (a runner does its own)."""
    if owner is not None and own_claim:
        events.fail_job(interaction_id, owner, f"{type(error).__name__}: {error}")


def still_held(events: EventLog, owner: str | None, interaction_id: str) -> bool:
    """Renew the claim before writing; False when another executor took the job over."""
    if owner is None:
        return True
    return events.claim(interaction_id, owner, LEASE_S) == "held"
