"""Delete every document of `more`."""
revision = "0002"
down_revision = "0001"


def plan(ctx):
    for doc in ctx.scan("more"):
        yield ctx.delete(doc)
