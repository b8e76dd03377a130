"""The generator: fn(item, ctx) -> row. One chat completion per item, under ctx.limit with an
estimate of its tokens; the response's usage corrects the estimate and counts as the item's
spend (ctx.usage).

Environment:
  OPENAI_BASE_URL    the endpoint, e.g. http://vllm.models:8000/v1 (default: the client's)
  OPENAI_API_KEY     its key (any string for servers that take none)
  LLM_MODEL          model name (default gpt-4o-mini)
  LLM_PRICE_INPUT, LLM_PRICE_OUTPUT
                     price per million prompt / completion tokens in your currency, for
                     ctx.usage(cost=...) (default 0: no cost reported)
"""

from __future__ import annotations

import functools
import math
import os
from typing import Any

SYSTEM = "Label the sentiment of the text. Answer with one word: positive, negative, neutral or mixed."
MAX_TOKENS = 8


@functools.cache
def client() -> Any:
    """One client per worker process. Its own retries are off: ctx.retry retries instead, so
    that every pod of the scope hears of a 429 and slows down with this one."""
    from openai import OpenAI

    return OpenAI(
        base_url=os.environ.get("OPENAI_BASE_URL") or None,
        api_key=os.environ.get("OPENAI_API_KEY") or "none",
        max_retries=0,
        timeout=float(os.environ.get("LLM_TIMEOUT_SECONDS") or 60),
    )


def estimate_tokens(messages: list[dict[str, str]], max_tokens: int) -> int:
    """About four characters a token, a few per message, and the longest answer allowed: an
    estimate at or a little above what the API will bill, so corrections are mostly refunds."""
    return sum(math.ceil(len(m["content"]) / 4) + 3 for m in messages) + max_tokens


def generate(item: Any, ctx: Any) -> dict[str, Any]:
    text = item["text"] if isinstance(item, dict) else str(item)
    messages = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"[id={ctx.item_id}] {text}"},
    ]
    model = os.environ.get("LLM_MODEL") or "gpt-4o-mini"

    def call() -> Any:
        return client().chat.completions.create(model=model, messages=messages, max_tokens=MAX_TOKENS, temperature=0)

    with ctx.limit(tokens=estimate_tokens(messages, MAX_TOKENS)):
        response = ctx.retry(call, attempts=int(os.environ.get("LLM_ATTEMPTS") or 8), max_delay=60)
        usage = response.usage
        if usage is not None:
            price_in = float(os.environ.get("LLM_PRICE_INPUT") or 0)
            price_out = float(os.environ.get("LLM_PRICE_OUTPUT") or 0)
            cost = (usage.prompt_tokens * price_in + usage.completion_tokens * price_out) / 1e6
            ctx.usage(tokens=usage.total_tokens, cost=cost or None)
    answer = (response.choices[0].message.content or "").strip().lower()
    return {
        "id": ctx.item_id,
        "text": text,
        "label": answer.split()[0].strip(".,!") if answer else "",
        "tokens": usage.total_tokens if usage is not None else None,
    }
