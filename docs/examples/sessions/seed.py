"""Write thirty login sessions, one expiring every four days from 1 December 2025, to the
project FSMIGRATE_PROJECT names (the tutorial's data)."""

import datetime as dt
import os

from google.cloud import firestore

project = os.environ["FSMIGRATE_PROJECT"]
db = firestore.Client(project=project)  # the emulator, when FIRESTORE_EMULATOR_HOST is set
first = dt.datetime(2025, 12, 1, tzinfo=dt.timezone.utc)
for i in range(30):
    db.collection("sessions").document(f"s{i:02d}").set(
        {"user": f"user{i % 7}", "expires_at": first + dt.timedelta(days=4 * i)}
    )
print(f"30 sessions written to {project}")
