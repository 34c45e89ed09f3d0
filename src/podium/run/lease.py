"""Fold leases in a run's mirror: while a machine trains fold k it holds <mirror>/leases/fold<k>.json and refreshes
its heartbeat; other machines skip the fold (`--folds next`) or are refused (`--folds k`) until the holder publishes
the finished fold and removes the lease, or stops refreshing it for LEASE_TTL seconds (its machine died); a lease
of a process of this host that no longer runs is stale at once.

Taking a free lease is atomic where the store allows it: a local or shared folder (file://) creates it with
O_EXCL, S3 with a conditional PUT (If-None-Match: *). Stores without either (gs://, az:// through fsspec, memory://)
get a check then a write: two machines starting within the same second may both take a fold (best effort).
Taking over a stale lease is a delete and a create; two machines doing that at the same moment may both succeed
(best effort on every store): the fold is then trained twice and the last manifest wins, which loses nothing.
"""

from __future__ import annotations

import os
import secrets
import socket
from datetime import datetime, timezone

from podium.io import process_alive
from podium.run.store import Store, now

LEASE_TTL = 300.0  # seconds without a heartbeat after which a lease is stale (its machine died or lost the network)
HEARTBEAT = 30.0  # seconds between a holder's refreshes: many within one LEASE_TTL, so a slow store is no death


def new_lease(k: int) -> dict:
    return {"fold": k, "host": socket.gethostname(), "pid": os.getpid(), "token": secrets.token_hex(8),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "heartbeat": now()}


def is_stale(record: dict, ttl: float = LEASE_TTL) -> bool:
    """No heartbeat for `ttl` seconds, or held by a process of this host that no longer runs (killed: resumable at
    once here, as a stale fold lock is)."""
    beat, pid = record.get("heartbeat"), record.get("pid")
    if record.get("host") == socket.gethostname() and isinstance(pid, int) and not process_alive(pid):
        return True
    return isinstance(beat, (int, float)) and now() - beat > ttl


def take(store: Store, k: int, ttl: float = LEASE_TTL) -> tuple[dict | None, dict | None]:
    """(this process's lease, None) when fold k was free or its lease stale; (None, the holder's record) when a live
    holder has it."""
    mine = new_lease(k)
    for _ in range(2):
        if store.create_lease(k, mine):
            return mine, None
        holder = store.lease(k)
        if holder is None:
            continue  # released between the create and the read: try again
        if not is_stale(holder, ttl):
            return None, holder
        store.remove_lease(k)
    return None, store.lease(k) or {}


def refresh(store: Store, k: int, mine: dict) -> bool:
    """Renew the heartbeat of this process's lease; False when it is no longer this process's (taken over)."""
    holder = store.lease(k)
    if holder is not None and holder.get("token") != mine["token"]:
        return False
    mine["heartbeat"] = now()
    store.write_lease(k, mine)
    return True


def release(store: Store, k: int, mine: dict) -> None:
    holder = store.lease(k)
    if holder is not None and holder.get("token") == mine["token"]:
        store.remove_lease(k)


def describe(holder: dict) -> str:
    age = now() - holder["heartbeat"] if isinstance(holder.get("heartbeat"), (int, float)) else None
    beat = f", last heartbeat {age:.0f} s ago" if age is not None else ""
    return (f"process {holder.get('pid', '?')} on host {holder.get('host', '?')} (since "
            f"{holder.get('started', '?')}{beat})")
