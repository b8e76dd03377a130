"""spec.budget over a run's spend (requests, tokens, cost). Pure."""

from __future__ import annotations

from datasetjob.spec.api import BudgetFields

USAGE = ("requests", "tokens", "cost")
Spend = dict[str, float]


def no_spend() -> Spend:
    return dict.fromkeys(USAGE, 0.0)


def over_budget(spent: Spend, budget: BudgetFields | None) -> str | None:
    """Which limit of `budget` the spend has reached, for humans; None while within it. Pure."""
    if budget is None:
        return None
    limits = (("requests", budget.max_requests), ("tokens", budget.max_tokens), ("cost", budget.max_cost))
    for name, limit in limits:
        if limit is not None and spent.get(name, 0.0) >= limit:
            return f"spec.budget.max{name.capitalize()} {limit:g} reached ({spent.get(name, 0.0):g} {name} spent)"
    return None


def spend_text(spent: Spend) -> str:
    return ", ".join(f"{spent.get(name, 0.0):g} {name}" for name in USAGE)
