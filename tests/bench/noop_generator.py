"""A generator that does no work, for measuring orchestration overhead."""


def row(item, ctx):
    return {"item": item}
