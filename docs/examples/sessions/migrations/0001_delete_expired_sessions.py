"""Delete the sessions expired before 2026."""

import datetime as dt

revision = "0001"
down_revision = None  # the previous revision; None for the first

CUTOFF = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def plan(ctx):
    for doc in ctx.scan("sessions"):  # streams the collection, in constant memory
        if doc.get("expires_at") < CUTOFF:
            yield ctx.delete(doc)  # guarded by the document's update time, archived first
