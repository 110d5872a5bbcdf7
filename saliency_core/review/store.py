"""Review decisions and their audit log, in SQLite (default) or PostgreSQL, via SQLAlchemy Core.

Where the data lives:

- ``DATABASE_URL`` set (``postgresql://user:pass@host/db``): that PostgreSQL database.
- otherwise a SQLite file at ``SALIENCY_DB`` (default ``./data/reviews.sqlite``), in WAL mode
  with a busy timeout, ``synchronous=FULL``, and every write transaction started with
  ``BEGIN IMMEDIATE`` so writers queue instead of failing half-way.

Tables (created on first use):

- ``review_batches``: one row per batch: how its items were chosen, by whom, the model
  fingerprint and the methods with their parameters (fixed when the batch was opened).
- ``review_decisions``: one row per (batch, item image hash, reviewer), unique, so a double
  submit cannot create a second row. Holds the current decision, note, seconds spent,
  model fingerprint, methods + parameters, time and a ``version`` that counts its changes.
- ``review_audit``: append-only (database triggers refuse UPDATE and DELETE). Every create
  or change of a decision appends one row (who, which decision, from what to what, when) in
  the same transaction as the change itself, so the log and the decisions cannot disagree.
- ``review_events``: append-only as well: sign-in failures, successes, lockouts and unlocks
  (``auth.SignInThrottle``).

Tamper evidence: triggers stop the app's own connections, not someone with write access to the
database (SQLite's ``REPLACE INTO``, PostgreSQL with triggers disabled). So every audit and event
row carries ``row_hash`` = sha256 of its canonical JSON (all its fields, the previous row's hash
included) and each audit row records ``decision_hash``, the hash of the decision row as that
change left it. ``verify()`` (``python -m saliency_core audit verify``, the Review page's admin
view) walks both chains and compares every decision with its last audit row; it names the first
row that does not match. The hash of the last row (``head``) is printed and put in reports: a
copy kept elsewhere also exposes a rewrite of the whole chain.

Example:
    >>> store = ReviewStore("sqlite:////tmp/reviews.sqlite")
    >>> r = store.record("batch-1", item_hash, "cat.png", "alice", "accept", note="ears in focus",
    ...                  seconds=12.5, model_fingerprint=model.fingerprint, methods={"gradcam": {}})
    >>> r.action, r.decision.version
    ('created', 1)
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event, exc

from .chain import append_audit, append_chained, chain_row_hash, decision_hash, verify_chain
from .schema import (
    BUSY_TIMEOUT,
    DECISIONS,
    DEFAULT_SQLITE,
    EVENT_KINDS,
    GENESIS,
    MAX_NOTE,
    PG_SCHEMA_LOCK,
    SQLITE_AUDIT_NO_UPDATE,
    AuditCheck,
    AuditEntry,
    Batch,
    Decision,
    DecisionConflict,
    Event,
    Recorded,
    StoreError,
    as_utc,
    audit,
    audit_entry_from_row,
    batch_from_row,
    batches,
    checked_text,
    decision_from_row,
    decisions,
    event_from_row,
    events,
    metadata,
    utc_now,
)


def database_url(url: str | None = None) -> str:
    """The database to use: ``url``, else ``DATABASE_URL``, else the SQLite file ``SALIENCY_DB``.

    Args:
        url: an SQLAlchemy URL (``sqlite:////abs/path.sqlite``, ``postgresql://...``) or None.
    Returns:
        SQLAlchemy URL string; ``postgres://`` and ``postgresql://`` use the psycopg driver.

    Example:
        >>> database_url("postgres://u@db/reviews")
        'postgresql+psycopg://u@db/reviews'
    """
    url = url or os.environ.get("DATABASE_URL") or ""
    if not url.strip():
        return sqlite_url(os.environ.get("SALIENCY_DB") or DEFAULT_SQLITE)
    url = url.strip()
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def sqlite_url(path: str | os.PathLike) -> str:
    """SQLAlchemy URL of a SQLite file (made absolute, so a later ``chdir`` does not move it)."""
    return "sqlite:///" + str(Path(path).expanduser().absolute())


class ReviewStore:
    """Decisions and audit log in one database. Thread-safe; each process opens its own.

    Args:
        url: SQLAlchemy URL; None picks ``DATABASE_URL`` or the ``SALIENCY_DB`` SQLite file
            (see ``database_url``).
        busy_timeout: SQLite only: seconds to wait for another writer's lock.
    Raises:
        StoreError: the database cannot be opened or created (message names the cause:
            missing or read-only folder/file, not a database, server unreachable, ...).

    Example:
        >>> with ReviewStore() as store:
        ...     store.decisions(batch="batch-1", reviewer="alice")
    """

    def __init__(self, url: str | None = None, *, busy_timeout: float = BUSY_TIMEOUT):
        try:
            self.url = sa.engine.make_url(database_url(url))
        except exc.ArgumentError:
            raise StoreError(
                f"Expected a database URL such as sqlite:////path/reviews.sqlite or "
                f"postgresql://user@host/db; got {url!r}."
            ) from None
        self.backend = self.url.get_backend_name()
        self.busy_timeout = float(busy_timeout)
        if self.backend == "sqlite":
            self._engine = self._sqlite_engine()
        elif self.backend == "postgresql":
            if self.url.drivername == "postgresql":
                self.url = self.url.set(drivername="postgresql+psycopg")
            try:
                self._engine = sa.create_engine(
                    self.url, pool_pre_ping=True, connect_args={"connect_timeout": 10}
                )
            except ImportError as err:
                raise StoreError(
                    f"PostgreSQL needs the psycopg package ({err}); install requirements.txt."
                ) from None
        else:
            raise StoreError(f"Expected a SQLite or PostgreSQL database URL; got one for {self.backend!r}.")
        self._create_schema()

    # ---- connection plumbing ---------------------------------------------------------------------
    @property
    def where(self) -> str:
        """Where the data lives, for messages: the SQLite path or the URL without password."""
        if self.backend == "sqlite":
            return self.url.database
        return self.url.render_as_string(hide_password=True)

    def _sqlite_engine(self) -> sa.Engine:
        path = self.url.database
        if not path or path == ":memory:" or self.url.query.get("mode") == "memory":
            raise StoreError(
                "Expected a SQLite database file path; got an in-memory database, "
                "which would lose every decision when the app stops."
            )
        folder = Path(path).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StoreError(
                f"Cannot create the folder {folder} for the review database: "
                f"{err.strerror or err}. Set SALIENCY_DB to a writable path."
            ) from None
        engine = sa.create_engine(self.url, connect_args={"timeout": self.busy_timeout})
        busy_ms = int(self.busy_timeout * 1000)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection, _record):
            dbapi_connection.isolation_level = None  # SQLAlchemy's "begin" event issues BEGIN
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
                cursor.execute("PRAGMA journal_mode = WAL")
                cursor.execute("PRAGMA synchronous = FULL")
                cursor.execute("PRAGMA foreign_keys = ON")
            finally:
                cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn):
            # IMMEDIATE takes the write lock up front: writers queue (busy timeout) instead of
            # failing when a read turns into a write after another writer committed.
            write = conn.get_execution_options().get("saliency_write")
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine

    @contextmanager
    def _transaction(self, write: bool, doing: str | None = None) -> Iterator[sa.Connection]:
        try:
            with self._engine.connect() as conn:
                if write:
                    conn.execution_options(saliency_write=True)
                with conn.begin():
                    yield conn
        except StoreError:
            raise
        except exc.DBAPIError as err:
            doing = doing or ("record the decision" if write else "read the review database")
            raise self._explain(err, doing) from None

    def transaction(self, write: bool = False, doing: str | None = None):
        """A connection in one transaction (``write``: the write lock first), driver errors in words:
        for the modules that keep their own tables in this database (review/qualification.py)."""
        return self._transaction(write, doing)

    def _explain(self, err: exc.DBAPIError, doing: str) -> StoreError:
        """The driver's error in words a reviewer and an operator understand."""
        lines = str(getattr(err, "orig", None) or err).strip().splitlines()
        text = lines[0] if lines else type(err).__name__
        low = text.lower()
        if self.backend == "sqlite":
            path, folder = self.url.database, str(Path(self.url.database).parent)
            if "locked" in low or "busy" in low:
                return StoreError(
                    f"The review database {path} is locked by another program and stayed locked for "
                    f"{self.busy_timeout:g} s, so the app could not {doing}; nothing was written. "
                    "Try again in a moment; if it persists, close the program holding the file."
                )
            if (
                "readonly" in low
                or "read-only" in low
                or ("unable to open" in low and os.path.exists(path) and not _writable(path, folder))
            ):
                return StoreError(
                    f"The review database {path} is read-only (the file or its folder {folder} cannot be "
                    f"written), so the app could not {doing}; nothing was written. Ask the operator to make "
                    "both writable, or set SALIENCY_DB to a writable path."
                )
            if "unable to open" in low:
                return StoreError(
                    f"Cannot open the review database {path}: the folder {folder} is missing "
                    "or not accessible. Set SALIENCY_DB to a writable path."
                )
            if "not a database" in low or "malformed" in low:
                return StoreError(
                    f"{path} is not a usable SQLite database ({text}). Point SALIENCY_DB to "
                    "the review database, or move this file away to start a new one."
                )
            if "disk is full" in low or "disk i/o" in low:
                return StoreError(
                    f"The disk holding {path} failed or is full ({text}), so the app could not "
                    f"{doing}; nothing was written."
                )
        elif isinstance(err, exc.OperationalError):
            return StoreError(
                f"The PostgreSQL database {self.where} cannot be reached or refused the request "
                f"({text}), so the app could not {doing}; nothing was written. Check DATABASE_URL "
                "and that the server is running."
            )
        return StoreError(
            f"The review database {self.where} reported an error, so the app could not {doing} "
            f"({type(getattr(err, 'orig', err)).__name__}: {text}); nothing was written."
        )

    def _create_schema(self) -> None:
        with self._transaction(write=True, doing="open the review database") as conn:
            if self.backend == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_SCHEMA_LOCK})
            metadata.create_all(conn)
            self._migrate(conn)

    def _migrate(self, conn: sa.Connection) -> None:
        """A database made before the hash chain (its audit table has none of the hash columns):
        add the columns and seal the existing audit rows (hashed as they are now, each decision
        against its current row) in one transaction; a ``chain_started`` event in the chain says
        how many rows were sealed.

        Only then are rows sealed: those rows provably predate the chain, since the table could
        not hold a hash. A hash is written once, by the code that writes its row; in a database
        that already has the columns, a row without a hash is never repaired here (``verify``
        names it as a failure), or clearing a row's hashes and editing it would launder the edit.
        """
        present = {c["name"] for c in sa.inspect(conn).get_columns("review_audit")}
        hash_columns = ("decision_hash", "prev_hash", "row_hash")
        if any(c in present for c in hash_columns):
            return  # at the current schema: nothing to seal, whatever the rows hold
        for name in hash_columns:
            conn.execute(sa.text(f"ALTER TABLE review_audit ADD COLUMN {name} VARCHAR(64)"))
        unsealed = conn.execute(sa.select(sa.func.count()).select_from(audit)).scalar()
        rows = [dict(r._mapping) for r in conn.execute(sa.select(audit).order_by(audit.c.id))]
        last_of = {r["decision_id"]: r["id"] for r in rows}
        current = {d.id: d for d in map(decision_from_row, conn.execute(sa.select(decisions)))}
        if self.backend == "sqlite":
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS review_audit_no_update")
        else:
            conn.exec_driver_sql("ALTER TABLE review_audit DISABLE TRIGGER USER")
        prev = GENESIS
        for r in rows:
            r["at"], r["seconds"] = as_utc(r["at"]), float(r["seconds"])
            if r["row_hash"] is None:
                d = current.get(r["decision_id"])
                r["decision_hash"] = (
                    decision_hash(d)
                    if d is not None and last_of[r["decision_id"]] == r["id"]
                    else r["decision_hash"]
                )
                r["prev_hash"] = prev
                r["row_hash"] = chain_row_hash(audit, r)
                conn.execute(
                    audit.update()
                    .where(audit.c.id == r["id"])
                    .values(
                        decision_hash=r["decision_hash"], prev_hash=r["prev_hash"], row_hash=r["row_hash"]
                    )
                )
            prev = r["row_hash"]
        if self.backend == "sqlite":
            conn.exec_driver_sql(SQLITE_AUDIT_NO_UPDATE)
        else:
            conn.exec_driver_sql("ALTER TABLE review_audit ENABLE TRIGGER USER")
        append_chained(
            conn,
            events,
            {
                "at": utc_now(),
                "kind": "chain_started",
                "account": "",
                "client": "",
                "actor": "",
                "until": None,
                "detail": f"{unsealed} audit row(s) written before the hash chain existed "
                "were sealed as found",
            },
        )

    def close(self) -> None:
        """Close every pooled connection."""
        self._engine.dispose()

    def __enter__(self) -> ReviewStore:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    # ---- batches ---------------------------------------------------------------------------------
    def open_batch(
        self, name: str, *, source: str, created_by: str, model_fingerprint: str, methods: dict
    ) -> Batch:
        """Register a batch, or return it unchanged if it exists (the first opener fixes its methods).

        Args:
            name: batch name, unique. source: how items are found ("samples", "folder:sub", "upload").
            created_by: reviewer who opened it. methods: {method name: parameters}.
        Returns:
            the stored Batch (its ``methods`` may differ from the ones passed if it already existed).
        """
        checked_text(name, "batch name")
        checked_text(created_by, "reviewer name")
        row = {
            "name": name,
            "source": str(source)[:500],
            "created_by": created_by,
            "created_at": utc_now(),
            "model_fingerprint": str(model_fingerprint),
            "methods": dict(methods),
        }
        with self._transaction(write=True, doing="open the batch") as conn:
            conn.execute(self._insert(batches).values(**row).on_conflict_do_nothing(index_elements=["name"]))
            return batch_from_row(conn.execute(sa.select(batches).where(batches.c.name == name)).one())

    def batch(self, name: str) -> Batch | None:
        """The batch called ``name``, or None."""
        with self._transaction(write=False) as conn:
            row = conn.execute(sa.select(batches).where(batches.c.name == name)).first()
        return batch_from_row(row) if row else None

    def batches(self) -> list[Batch]:
        """All batches, newest first."""
        with self._transaction(write=False) as conn:
            rows = conn.execute(
                sa.select(batches).order_by(batches.c.created_at.desc(), batches.c.name)
            ).all()
        return [batch_from_row(r) for r in rows]

    def last_batch(self, reviewer: str) -> str | None:
        """The batch ``reviewer`` last recorded a decision in (else last opened), or None."""
        with self._transaction(write=False) as conn:
            name = conn.execute(
                sa.select(decisions.c.batch)
                .where(decisions.c.reviewer == reviewer)
                .order_by(decisions.c.decided_at.desc(), decisions.c.id.desc())
                .limit(1)
            ).scalar()
            if name is None:
                name = conn.execute(
                    sa.select(batches.c.name)
                    .where(batches.c.created_by == reviewer)
                    .order_by(batches.c.created_at.desc())
                    .limit(1)
                ).scalar()
        return name

    # ---- decisions -------------------------------------------------------------------------------
    def _insert(self, table: sa.Table):
        if self.backend == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        return insert(table)

    def record(
        self,
        batch: str,
        item_hash: str,
        item_name: str,
        reviewer: str,
        decision: str,
        *,
        note: str = "",
        seconds: float = 0.0,
        model_fingerprint: str = "",
        methods: dict | None = None,
        actor: str | None = None,
        expected_version: int | None = None,
    ) -> Recorded:
        """Record ``reviewer``'s decision on one item, appending an audit row in the same transaction.

        A repeat of the current decision and note writes nothing ("unchanged"), so a double submit
        never duplicates. A different decision or note updates the one row, adds ``seconds`` to
        its time spent, bumps its ``version`` and appends the old and new values to the audit log.

        Args:
            batch, item_hash, item_name: which item (image sha256 and display name) in which batch.
            reviewer: whose decision. decision: one of ``DECISIONS``. note: free text.
            seconds: time the reviewer spent on the item for this decision (>= 0).
            model_fingerprint, methods: what the reviewer saw: model sha256, {method: parameters}.
            actor: who makes the change (default: the reviewer).
            expected_version: the ``version`` the reviewer saw (0: no decision yet). If the stored
                decision has moved on since (another window), nothing is written and
                ``DecisionConflict`` says what it is now. None: no check.
        Returns:
            Recorded(decision, action, audit_id).
        Raises:
            ValueError: bad arguments. DecisionConflict: see ``expected_version``.
            StoreError: the database is locked, read-only or unreachable; nothing was written.

        Example:
            >>> store.record("b1", h, "cat.png", "alice", "reject", note="looked at the floor").action
            'created'
        """
        actor, note, seconds = _checked_submission(
            batch, item_hash, item_name, reviewer, decision, note, seconds, actor
        )
        entry = _Entry(
            batch=batch,
            item_hash=item_hash,
            item_name=item_name,
            reviewer=reviewer,
            decision=decision,
            note=note,
            seconds=seconds,
            model_fingerprint=model_fingerprint,
            methods=dict(methods or {}),
            actor=actor,
        )
        key = (
            (decisions.c.batch == batch)
            & (decisions.c.item_hash == item_hash)
            & (decisions.c.reviewer == reviewer)
        )
        with self._transaction(write=True) as conn:
            current = conn.execute(sa.select(decisions).where(key).with_for_update()).first()
            now = utc_now()
            if current is None:
                if expected_version not in (None, 0):
                    raise StoreError(
                        f"Expected to change version {expected_version} of {reviewer}'s decision "
                        f"on {item_name}, but there is no decision to change."
                    )
                created = self._create_decision(conn, entry, now)
                if created is not None:
                    return created
                # Another writer created it between our read and insert (PostgreSQL): use theirs.
                current = conn.execute(sa.select(decisions).where(key).with_for_update()).one()
            return self._change_decision(conn, decision_from_row(current), entry, expected_version, now)

    def _create_decision(self, conn, entry: _Entry, now: datetime) -> Recorded | None:
        """Insert the first decision on an item with its "create" audit row; None if another
        writer inserted one first."""
        new_id = conn.execute(
            self._insert(decisions)
            .values(
                batch=entry.batch,
                item_hash=entry.item_hash,
                item_name=entry.item_name,
                reviewer=entry.reviewer,
                decision=entry.decision,
                note=entry.note,
                seconds=entry.seconds,
                model_fingerprint=entry.model_fingerprint,
                methods=entry.methods,
                decided_at=now,
                version=1,
            )
            .on_conflict_do_nothing(index_elements=["batch", "item_hash", "reviewer"])
            .returning(decisions.c.id)
        ).scalar()
        if new_id is None:
            return None
        made = decision_from_row(conn.execute(sa.select(decisions).where(decisions.c.id == new_id)).one())
        audit_id = append_audit(
            conn,
            decision_id=new_id,
            batch=entry.batch,
            item_hash=entry.item_hash,
            item_name=entry.item_name,
            reviewer=entry.reviewer,
            actor=entry.actor,
            action="create",
            old_decision=None,
            new_decision=entry.decision,
            old_note=None,
            new_note=entry.note,
            seconds=entry.seconds,
            version=1,
            at=now,
            decision_hash=decision_hash(made),
        )
        return Recorded(made, "created", audit_id)

    def _change_decision(
        self, conn, old: Decision, entry: _Entry, expected_version: int | None, now: datetime
    ) -> Recorded:
        """Change the stored decision ``old`` to ``entry`` with its "change" audit row (nothing if
        decision and note are the same; DecisionConflict if ``old`` is not the version expected)."""
        if old.decision == entry.decision and old.note == entry.note:
            return Recorded(old, "unchanged", None)
        if expected_version is not None and expected_version != old.version:
            raise DecisionConflict(
                f"{entry.reviewer}'s decision on {entry.item_name} was changed elsewhere (another window or "
                f"tab) to {old.label} at {old.decided_at:%Y-%m-%d %H:%M:%S} UTC since this page showed it; "
                "nothing was written. Check the item and decide again.",
                old,
            )
        version = old.version + 1
        done = conn.execute(
            decisions.update()
            .where((decisions.c.id == old.id) & (decisions.c.version == old.version))
            .values(
                decision=entry.decision,
                note=entry.note,
                seconds=old.seconds + entry.seconds,
                item_name=entry.item_name,
                model_fingerprint=entry.model_fingerprint,
                methods=entry.methods,
                decided_at=now,
                version=version,
            )
        )
        if done.rowcount != 1:  # cannot happen under the row lock; refuse rather than guess
            raise StoreError(
                f"{entry.reviewer}'s decision on {entry.item_name} changed during the update; "
                "nothing was written. Try again."
            )
        changed = decision_from_row(conn.execute(sa.select(decisions).where(decisions.c.id == old.id)).one())
        audit_id = append_audit(
            conn,
            decision_id=old.id,
            batch=entry.batch,
            item_hash=entry.item_hash,
            item_name=entry.item_name,
            reviewer=entry.reviewer,
            actor=entry.actor,
            action="change",
            old_decision=old.decision,
            new_decision=entry.decision,
            old_note=old.note,
            new_note=entry.note,
            seconds=entry.seconds,
            version=version,
            at=now,
            decision_hash=decision_hash(changed),
        )
        return Recorded(changed, "changed", audit_id)

    def decision(self, batch: str, item_hash: str, reviewer: str) -> Decision | None:
        """``reviewer``'s current decision on one item, or None."""
        with self._transaction(write=False) as conn:
            row = conn.execute(
                sa.select(decisions).where(
                    (decisions.c.batch == batch)
                    & (decisions.c.item_hash == item_hash)
                    & (decisions.c.reviewer == reviewer)
                )
            ).first()
        return decision_from_row(row) if row else None

    def decisions(self, batch: str | None = None, reviewer: str | None = None) -> list[Decision]:
        """Current decisions, optionally of one batch and/or reviewer, oldest first."""
        query = sa.select(decisions).order_by(decisions.c.batch, decisions.c.decided_at, decisions.c.id)
        if batch is not None:
            query = query.where(decisions.c.batch == batch)
        if reviewer is not None:
            query = query.where(decisions.c.reviewer == reviewer)
        with self._transaction(write=False) as conn:
            return [decision_from_row(r) for r in conn.execute(query)]

    # ---- sign-in events (auth.SignInThrottle) ----------------------------------------------------------
    def append_event(
        self,
        kind: str,
        *,
        account: str = "",
        client: str = "",
        actor: str = "",
        until: datetime | None = None,
        detail: str = "",
        at: datetime | None = None,
    ) -> Event:
        """Append one sign-in event (``EVENT_KINDS``) to the chained event log.

        Text is cut to the column sizes (user names typed at the sign-in form are untrusted).
        ``at``: the event's time (default now; the sign-in throttle passes its clock's).
        """
        if kind not in EVENT_KINDS:
            raise ValueError(f"Expected an event kind among {', '.join(EVENT_KINDS)}; got {kind!r}.")
        row = {
            "at": as_utc(at) if at is not None else utc_now(),
            "kind": kind,
            "account": str(account or "")[:200],
            "client": str(client or "")[:200],
            "actor": str(actor or "")[:200],
            "until": until,
            "detail": str(detail or "")[:2000],
        }
        with self._transaction(write=True, doing="record the sign-in event") as conn:
            new_id = append_chained(conn, events, row)
            return event_from_row(conn.execute(sa.select(events).where(events.c.id == new_id)).one())

    def events(
        self,
        kinds: Sequence[str] | None = None,
        account: str | None = None,
        client: str | None = None,
        since: datetime | None = None,
    ) -> list[Event]:
        """Sign-in events in the order written, optionally of some kinds / one account / one client /
        at or after ``since``."""
        query = sa.select(events).order_by(events.c.id)
        if kinds is not None:
            query = query.where(events.c.kind.in_(list(kinds)))
        if account is not None:
            query = query.where(events.c.account == str(account)[:200])
        if client is not None:
            query = query.where(events.c.client == str(client)[:200])
        if since is not None:
            query = query.where(events.c.at >= since)
        with self._transaction(write=False) as conn:
            return [event_from_row(r) for r in conn.execute(query)]

    # ---- tamper evidence ---------------------------------------------------------------------------
    def verify(self) -> AuditCheck:
        """Walk the audit and event chains and compare every decision with its last audit row.

        Returns:
            AuditCheck; ``problem`` names the first row that breaks (a row whose content no longer
            matches its hash, a row that does not follow the one before, a decision changed
            outside the app or without an audit row).

        Example:
            >>> store.verify().ok
            True
        """
        with self._engine.connect() as conn:
            if self.backend == "postgresql":  # one snapshot for all three tables
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            try:
                with conn.begin():
                    from .qualification import verify_qualifications  # its tables chain here too

                    return verify_qualifications(conn, verify_chain(conn))
            except exc.DBAPIError as err:
                raise self._explain(err, "verify the audit log") from None

    def audit_log(self, batch: str | None = None, decision_id: int | None = None) -> list[AuditEntry]:
        """Audit rows in the order they were written, optionally of one batch or decision."""
        query = sa.select(audit).order_by(audit.c.id)
        if batch is not None:
            query = query.where(audit.c.batch == batch)
        if decision_id is not None:
            query = query.where(audit.c.decision_id == decision_id)
        with self._transaction(write=False) as conn:
            return [audit_entry_from_row(r) for r in conn.execute(query)]


@dataclass(frozen=True)
class _Entry:
    """One checked decision to record: which item, whose decision, what the reviewer saw, who acts."""

    batch: str
    item_hash: str
    item_name: str
    reviewer: str
    decision: str
    note: str
    seconds: float
    model_fingerprint: str
    methods: dict
    actor: str


def _checked_submission(batch, item_hash, item_name, reviewer, decision, note, seconds, actor):
    """(actor, note, seconds) checked for ``ReviewStore.record``; ValueError on a bad argument."""
    checked_text(batch, "batch name")
    checked_text(item_hash, "item hash", 128)
    checked_text(item_name, "item name", 500)
    checked_text(reviewer, "reviewer name")
    actor = checked_text(actor or reviewer, "actor name")
    if decision not in DECISIONS:
        raise ValueError(f"Expected a decision among {', '.join(DECISIONS)}; got {decision!r}.")
    note = "" if note is None else str(note)
    if len(note) > MAX_NOTE:
        raise ValueError(f"The note must be at most {MAX_NOTE} characters; got {len(note)}.")
    try:
        seconds = float(seconds)
    except (TypeError, ValueError):
        raise ValueError(f"Expected the seconds spent as a number; got {seconds!r}.") from None
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ValueError(f"Expected the seconds spent to be a finite number >= 0; got {seconds}.")
    return actor, note, seconds


def _writable(path: str, folder: str) -> bool:
    # effective ids: what the process can do now (a root process that dropped privileges included)
    return os.access(path, os.W_OK, effective_ids=True) and os.access(
        folder, os.W_OK | os.X_OK, effective_ids=True
    )
