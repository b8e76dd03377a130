"""The kstatus conditions of a DatasetJob, derived from its phase. Pure."""

from __future__ import annotations

from .status import Condition, Phase


def conditions_for(
    old: list[Condition], phase: Phase, reason: str, message: str, now: str, generation: int
) -> list[Condition]:
    """The status conditions for a phase; a condition keeps its transition time while its
    status stays the same."""
    # Types that kstatus (Flux, kubectl wait) understands: Ready = published, Stalled = failed.
    wanted = {
        "Ready": phase == Phase.SUCCEEDED,
        "Progressing": phase in (Phase.GENERATING, Phase.COMBINING, Phase.QUEUED),
        "Stalled": phase == Phase.FAILED,
        "Suspended": phase == Phase.SUSPENDED,
        # Held by someone else (Kueue, or a person): the reason and message say who and why.
        "Queued": phase == Phase.QUEUED,
    }
    previous = {c.type: c for c in old}
    out = []
    for type_, on in wanted.items():
        status = "True" if on else "False"
        before = previous.get(type_)
        since = before.last_transition_time if before is not None and before.status == status else None
        out.append(
            Condition(
                type=type_,
                status=status,
                reason=reason if on else "NotApplicable",
                message=message if on else "",
                observed_generation=generation,
                last_transition_time=since or now,
            )
        )
    return out
