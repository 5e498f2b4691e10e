"""The index a query needs, read from Firestore's refusal.

A query that needs a composite index the database does not have is refused with
FAILED_PRECONDITION and a message like

    The query requires an index. You can create it here: https://console.firebase.google.com/
    v1/r/project/P/firestore/indexes?create_composite=ClFwcm9qZWN0cy9...

The `create_composite` parameter is the wanted index itself: a `google.firestore.admin.v1
.Index` message, serialized and base64url-encoded (its name says the project, database and
collection group; its fields the order or array config of each). `needed_index` decodes
it, so the refusal becomes one line naming the index and the command that creates it.
"""

from __future__ import annotations

import base64
import re
import shlex
import urllib.parse
from dataclasses import dataclass
from typing import Optional

from google.cloud.firestore_admin_v1.types import Index

__all__ = ["NeededIndex", "needed_index"]

_LINK = re.compile(r"https://\S+create_composite=[A-Za-z0-9_\-=%]+")
_NAME = re.compile(
    r"^projects/(?P<project>[^/]+)/databases/(?P<database>[^/]+)/collectionGroups/(?P<group>[^/]+)/"
)
_REQUIRES = "requires an index"
_SCOPES = {
    Index.QueryScope.COLLECTION: "collection",
    Index.QueryScope.COLLECTION_GROUP: "collection-group",
    Index.QueryScope.COLLECTION_RECURSIVE: "collection-recursive",
}


@dataclass(frozen=True)
class NeededIndex:
    """A composite index a query needs: where, and its fields in order, each as
    (field path, "ascending" / "descending" / "array-contains")."""

    project: str
    database: str
    collection_group: str
    query_scope: str  # as gcloud names it: collection, collection-group...
    fields: tuple[tuple[str, str], ...]
    link: str  # the console page that creates it

    def describe(self) -> str:
        """`users (collection): status ascending, age descending, __name__ descending`."""
        fields = ", ".join(f"{path} {how}" for path, how in self.fields)
        return f"{self.collection_group} ({self.query_scope}): {fields}"

    def gcloud(self) -> str:
        """The gcloud command that creates it."""
        args = [
            "gcloud",
            "firestore",
            "indexes",
            "composite",
            "create",
            f"--project={self.project}",
            f"--database={self.database}",
            f"--collection-group={self.collection_group}",
            f"--query-scope={self.query_scope}",
        ]
        for path, how in self.fields:
            if path == "__name__":
                continue  # gcloud adds the name field itself
            kind = "array-config=contains" if how == "array-contains" else f"order={how}"
            args.append(f"--field-config=field-path={path},{kind}")
        return shlex.join(args)


def needed_index(message: str) -> Optional[NeededIndex]:
    """The index a FAILED_PRECONDITION's message asks for, or None when the message is
    not about a missing index or its link cannot be read."""
    if _REQUIRES not in message and "create_composite=" not in message:
        return None
    found = _LINK.search(message)
    if found is None:
        return None
    link = found.group(0)
    query = urllib.parse.urlsplit(link).query
    encoded = urllib.parse.parse_qs(query).get("create_composite", [""])[0]
    try:
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        index = Index.deserialize(raw)
    except Exception:  # not an Index: the message is all there is
        return None
    where = _NAME.match(index.name)
    if where is None:
        return None
    fields = []
    for field in index.fields:
        if field.array_config == Index.IndexField.ArrayConfig.CONTAINS:
            how = "array-contains"
        elif field.order == Index.IndexField.Order.DESCENDING:
            how = "descending"
        elif field.order == Index.IndexField.Order.ASCENDING:
            how = "ascending"
        else:  # a vector index, or a kind this version does not know: the link still works
            how = "(see the link)"
        fields.append((field.field_path, how))
    return NeededIndex(
        project=where["project"],
        database=where["database"],
        collection_group=where["group"],
        query_scope=_SCOPES.get(index.query_scope, "collection"),
        fields=tuple(fields),
        link=link,
    )


def index_link(
    project: str,
    database: str,
    collection_group: str,
    fields: list[tuple[str, str]],
    scope: str = "collection",
) -> str:
    """A console link as Firestore writes it in its refusal, for `fields` as
    (path, ascending/descending/array-contains): what tests and examples build."""
    wanted = Index(
        name=f"projects/{project}/databases/{database}/collectionGroups/{collection_group}/indexes/_",
        query_scope={v: k for k, v in _SCOPES.items()}[scope],
        fields=[
            Index.IndexField(
                field_path=path,
                **(
                    {"array_config": Index.IndexField.ArrayConfig.CONTAINS}
                    if how == "array-contains"
                    else {
                        "order": Index.IndexField.Order.DESCENDING
                        if how == "descending"
                        else Index.IndexField.Order.ASCENDING
                    }
                ),
            )
            for path, how in fields
        ],
    )
    encoded = base64.urlsafe_b64encode(Index.serialize(wanted)).decode().rstrip("=")
    return (
        f"https://console.firebase.google.com/v1/r/project/{project}/firestore/indexes"
        f"?create_composite={encoded}"
    )
