"""What Firestore's admin API says of a database (`firestore_admin_v1`, GetDatabase): its
mode, location, point-in-time recovery and delete protection, as plain data.

`admin_client` opens the admin API where a Store's channels go, as the same principal.
The emulator has no admin API; a server that answers UNIMPLEMENTED, a principal without
the permission (`datastore.databases.getMetadata`: roles/datastore.viewer has it) or a
database that does not exist come back as a `DatabaseAnswer` with the status code and
message, never as an exception, so a caller can say what it could not check.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Optional

from google.api_core import exceptions as gexc
from google.cloud.firestore_admin_v1 import FirestoreAdminClient
from google.cloud.firestore_admin_v1.services.firestore_admin.transports import (
    FirestoreAdminGrpcTransport,
)
from google.cloud.firestore_admin_v1.types import Database

from fsmigrate.firestore.connection import CLIENT_INFO, USER_AGENT, Channels

__all__ = ["DatabaseAnswer", "DatabaseInfo", "admin_client", "read_database"]


@dataclass(frozen=True)
class DatabaseInfo:
    name: str  # projects/P/databases/D
    type: str  # FIRESTORE_NATIVE, DATASTORE_MODE
    location: str
    pitr: bool  # point-in-time recovery on
    version_retention: Optional[dt.timedelta]  # how far back reads may go
    earliest_version_time: Optional[dt.datetime]  # the oldest moment a read can name
    delete_protection: bool

    @property
    def native(self) -> bool:
        return self.type == "FIRESTORE_NATIVE"


@dataclass(frozen=True)
class DatabaseAnswer:
    """GetDatabase's answer: `info`, or the status code name and message of its refusal."""

    info: Optional[DatabaseInfo]
    code: Optional[str] = None  # NOT_FOUND, PERMISSION_DENIED, UNIMPLEMENTED...
    message: str = ""


def _info(db: Database) -> DatabaseInfo:
    pitr = (
        db.point_in_time_recovery_enablement
        == Database.PointInTimeRecoveryEnablement.POINT_IN_TIME_RECOVERY_ENABLED
    )
    protected = (
        db.delete_protection_state == Database.DeleteProtectionState.DELETE_PROTECTION_ENABLED
    )
    pb = Database.pb(db)
    retention = (
        pb.version_retention_period.ToTimedelta()
        if pb.HasField("version_retention_period")
        else None
    )
    earliest = (
        pb.earliest_version_time.ToDatetime(tzinfo=dt.timezone.utc)
        if pb.HasField("earliest_version_time")
        else None
    )
    return DatabaseInfo(
        name=db.name,
        type=Database.DatabaseType(db.type_).name,
        location=db.location_id,
        pitr=pitr,
        version_retention=retention,
        earliest_version_time=earliest,
        delete_protection=protected,
    )


def read_database(
    admin: FirestoreAdminClient, project: str, database: str, timeout: float = 30.0
) -> DatabaseAnswer:
    """GetDatabase of `projects/{project}/databases/{database}`, one try."""
    name = f"projects/{project}/databases/{database}"
    try:
        found: Any = admin.get_database(name=name, timeout=timeout, retry=None)
    except gexc.GoogleAPICallError as exc:
        code = getattr(exc.grpc_status_code, "name", None) or type(exc).__name__
        return DatabaseAnswer(None, code, str(exc.message))
    return DatabaseAnswer(_info(found))


@contextmanager
def admin_client(channels: Channels) -> Iterator[FirestoreAdminClient]:
    """The admin API of the database `channels` reach, on a channel of its own with the
    same endpoint, credentials (and so quota project), TLS and user agent as the Store's
    two; closed on leaving. Not for the emulator, which has no admin API (ValueError)."""
    connection = channels.connection
    if connection.is_emulator:
        raise ValueError("the emulator has no admin API")
    channel = FirestoreAdminGrpcTransport.create_channel(
        connection.host,
        credentials=channels.credentials,  # the quota project is on them
        ssl_credentials=channels.ssl_credentials,
        options=[("grpc.primary_user_agent", USER_AGENT)],
    )
    try:
        transport = FirestoreAdminGrpcTransport(
            host=connection.host, channel=channel, client_info=CLIENT_INFO
        )
        yield FirestoreAdminClient(transport=transport)
    finally:
        channel.close()
