"""The kstatus conditions of a DatasetJob, derived from its phase. Pure."""

from __future__ import annotations

from typing import NamedTuple

from .status import Condition, Phase


class Stall(NamedTuple):
    """Why a run that is not finished cannot go on by itself (a missing Secret, pods that
    cannot start): Stalled=True with this reason and message until it clears."""

    reason: str
    message: str


def conditions_for(
    old: list[Condition],
    phase: Phase | None,
    reason: str,
    message: str,
    now: str,
    generation: int,
    stall: Stall | None = None,
) -> list[Condition]:
    """The status conditions for a phase (None: no run started yet); a condition keeps its
    transition time while its status stays the same. A `stall` makes Stalled True (with its
    own reason and message) and Progressing False, whatever the phase."""
    # Types that kstatus (Flux, kubectl wait) understands: Ready = published, Stalled = failed
    # or stuck.
    wanted = {
        "Ready": phase == Phase.SUCCEEDED,
        "Progressing": stall is None and phase in (Phase.GENERATING, Phase.COMBINING, Phase.QUEUED),
        "Stalled": stall is not None or phase == Phase.FAILED,
        "Suspended": phase == Phase.SUSPENDED,
        # Held by someone else (Kueue, or a person): the reason and message say who and why.
        "Queued": phase == Phase.QUEUED,
    }
    previous = {c.type: c for c in old}
    out = []
    for type_, on in wanted.items():
        status = "True" if on else "False"
        why = (stall.reason, stall.message) if stall is not None and type_ == "Stalled" else (reason, message)
        before = previous.get(type_)
        since = before.last_transition_time if before is not None and before.status == status else None
        out.append(
            Condition(
                type=type_,
                status=status,
                reason=why[0] if on else "NotApplicable",
                message=why[1] if on else "",
                observed_generation=generation,
                last_transition_time=since or now,
            )
        )
    return out


def stalled_reason(conditions: list[Condition]) -> str | None:
    """The reason of a True Stalled condition, if there is one."""
    return next((c.reason or "" for c in conditions if c.type == "Stalled" and c.status == "True"), None)
