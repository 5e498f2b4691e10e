"""Write ten open tickets, opened 2020 to 2029, to the project FSMIGRATE_PROJECT names."""

import os

from google.cloud import firestore

project = os.environ["FSMIGRATE_PROJECT"]
db = firestore.Client(project=project)  # the emulator, when FIRESTORE_EMULATOR_HOST is set
for i in range(10):
    db.collection("tickets").document(f"t{i}").set(
        {"opened": f"{2020 + i}-01-01", "status": "open"}
    )
print(f"10 tickets written to {project}")
