"""The options of the gRPC channel a Store reads and commits through: its server streams
are received on the thread that reads them (connection.py opens it, with the same
credentials, endpoint and user agent as the Firestore client's channel).

By default gRPC Python receives every message of a server stream (a scan's documents, a
batch read's answers) on its channel's spin thread and hands it to the reading thread
through a condition variable: two threads and a hand-over per document. With gRPC's
`SingleThreadedUnaryStream` channel option the reading thread takes each message from the
call itself. Measured on 50,000 documents on two cores (bench/cleanup.py, `floor` and
`floor-1t`): the same raw read took 0.48 s of client CPU instead of 1.7-3.5 s, and a
dry-run of migration 0001 half its time. The transport still receives the stream while
the reader works, up to a bounded window (below), so nothing needs to read ahead.

The Firestore client (`firestore.Client`) has a channel of its own for everything else
(document references, a script's own reads), without these options.
"""

from __future__ import annotations

import grpc

OPTIONS = [
    (grpc.experimental.ChannelOptions.SingleThreadedUnaryStream, 1),
    # The transport reads at most 1 MiB of a stream ahead of its reader. With gRPC's
    # bandwidth-delay probing (the default) it widens its window to what the link
    # carries, and a plan slower than the server held most of the stream: a dry-run of
    # 1,000,000 documents peaked at 283 MB once (bench/results/cleanup-rss-1m-unbounded).
    # 1 MiB reads as fast as the default on the emulator (64 KiB: 15% slower).
    ("grpc.http2.bdp_probe", 0),
    ("grpc.http2.lookahead_bytes", 1 << 20),
    # as the Firestore client's channels: no client-side message size limit
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
]
KEEPALIVE = [("grpc.keepalive_time_ms", 30000)]  # as the Firestore client, against Google
