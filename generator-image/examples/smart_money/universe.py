"""The item universe: 100 synthetic ticker symbols × 36 month-ends (2023-01 .. 2025-12)."""

import calendar

HISTORY_MONTHS = 96  # 2023-01 .. 2030-12: what the fake upstream has prices for


def symbols(n: int = 100) -> list[str]:
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return [letters[i // 26 % 26] + letters[i % 26] + letters[(i * 7) % 26] for i in range(n)]


def month_ends(start_year: int = 2023, months: int = 36) -> list[str]:
    out = []
    for k in range(months):
        year, month = start_year + k // 12, k % 12 + 1
        out.append(f"{year:04d}-{month:02d}-{calendar.monthrange(year, month)[1]:02d}")
    return out
