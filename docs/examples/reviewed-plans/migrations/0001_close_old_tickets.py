"""Close the tickets opened before 2026."""

revision = "0001"
down_revision = None


def plan(ctx):
    for doc in ctx.scan("tickets"):
        if doc.get("opened") < "2026":
            yield ctx.update(doc, {"status": "closed"})
