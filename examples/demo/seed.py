"""Seed the demo data set into the Firestore emulator (refuses anything else).

Usage: python examples/demo/seed.py --project fsmigrate-demo
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import sys

from google.cloud import firestore


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", default=os.environ.get("FSMIGRATE_PROJECT", "fsmigrate-demo"))
    args = parser.parse_args()
    if not os.environ.get("FIRESTORE_EMULATOR_HOST"):
        print("seed.py: FIRESTORE_EMULATOR_HOST is not set; the demo only seeds an emulator",
              file=sys.stderr)
        return 2
    client = firestore.Client(project=args.project)
    base = dt.datetime(2025, 6, 1, tzinfo=dt.timezone.utc)
    batch = client.batch()
    for i in range(40):
        user = {"name": f"user {i}", "email": f"user{i}@example.com",
                "created_at": base + dt.timedelta(days=i)}
        if i % 4:
            user["status"] = "active" if i % 3 else "suspended"
        batch.set(client.document(f"users/u{i:03d}"), user)
    batch.commit()
    for start in range(0, 1234, 400):
        batch = client.batch()
        for i in range(start, min(start + 400, 1234)):
            expires = base + dt.timedelta(hours=6 * i)  # 2025-06-01 .. 2026-04-07
            batch.set(client.document(f"sessions/s{i:05d}"),
                      {"user": client.document(f"users/u{i % 40:03d}"), "expires_at": expires,
                       "token": os.urandom(8), "ip": f"10.0.{i % 256}.{i % 7}"})
        batch.commit()
    client.document("sessions/odd-one").set({"user": None, "note": "no expiry"})
    print(f"seeded 40 users and 1,235 sessions into project {args.project}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
