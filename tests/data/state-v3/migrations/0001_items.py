"""Delete the small items, zero the others, rename names/old to names/new."""
revision = "0001"
down_revision = None


def plan(ctx):
    for doc in ctx.scan("items"):
        if doc.get("n") < 3:
            yield ctx.delete(doc)
        else:
            yield ctx.update(doc, {"n": -1})
    old = ctx.get("names/old")
    if old is not None:
        yield ctx.rename(old, "new")
