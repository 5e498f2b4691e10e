"""Give every user without a `status` field the status "active".

Old sign-up code did not write `status`; readers treat a missing status as active.
"""
revision = "0002"
down_revision = "0001"


def plan(ctx):
    for doc in ctx.scan("users"):
        if doc.get("status") is None:
            yield ctx.update(doc, {"status": "active"})
