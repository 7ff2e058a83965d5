"""The SQL of the per-job hot path (enqueue, claim, finish), built once per Queue as text.

Each statement is what a peewee query would build; building it with peewee on every call cost
more than running it. The changes a claim and a successful run make to a job are written once,
as :func:`claimed_run` and :func:`completed_run`: the statements are generated from them, and
:mod:`queuectl.lifecycle` applies :func:`completed_run` through the same-run update, so the rule
"what a finished run changes" cannot say one thing in Python and another in SQL.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import schema
from .models import QUEUE_CLAIM_INDEX, READY, READY_QUEUE_INDEX, Job, State, ready_queues

JOB_TIMEOUT = "job-timeout"
COLUMN_NAMES = tuple(field.name for field in Job._meta.sorted_fields)
# The keys, in order, of the rows Queue.enqueue_many builds.
INSERTED = (
    "id", "command", "state", "attempts", "max_retries", "priority", "timeout", "run_at",
    "created_at", "updated_at", "cwd", "queue", "schedule", "waiting_on", "ready_at",
)  # fmt: skip


# A claim also reads the config `job-timeout` the run will get.
_TIMEOUT_READ = f'(SELECT "value" FROM "config" WHERE "key" = \'{JOB_TIMEOUT}\')'


@dataclass(frozen=True)
class Sql:
    """A piece of SQL text standing for a value (a parameter, or an expression)."""

    text: str


def claimed_run(worker: object, now: object) -> dict[str, object]:
    """What a claim changes: the job runs, one attempt more, under ``worker`` since ``now``."""
    return {
        "state": State.PROCESSING,
        "attempts": Sql('"attempts" + 1'),
        "worker": worker,
        "started_at": now,
        "updated_at": now,
        # The output so far is this run's (SPEC 6: `logs -f`), stored as it prints.
        "output": None,
        "output_bytes": 0,
    }


def completed_run(
    now: object, exit_code: object, output: object, output_bytes: object, ended_at: object
) -> dict[str, object]:
    """What a successful run changes (SPEC 3), stored ``now``: the run ended at ``ended_at``
    (earlier than ``now`` when the database was away as it ended: the run's time is its own,
    not the outage's)."""
    return {
        "state": State.COMPLETED,
        "exit_code": exit_code,
        "error": None,
        "output": output,
        "output_bytes": output_bytes,
        "finished_at": ended_at,
        "updated_at": now,
    }


def unless_cancelled(state: str) -> str:
    """SQL for the state a run's end stores: ``state`` (SQL text), or 'cancelled' when a user
    asked to cancel the job while it ran (SPEC 6). Every end of a run goes through it (the
    result stored, a rescue, a release), so a cancel that races the run's end still leaves one
    final state, and a cancelled job is never retried."""
    return f"CASE WHEN \"cancel_requested_at\" IS NULL THEN {state} ELSE '{State.CANCELLED.value}' END"


# The error of a run that exited 0 just as a user cancelled it: it ends cancelled all the same.
ENDED_AS_CANCELLED = "cancelled (it exited 0 by itself as the cancel came)"


def error_unless_cancelled(error: str) -> str:
    """SQL for the error a run's end stores: ``error`` (SQL text), or, where there is none (the
    run succeeded) and a user asked to cancel the job while it ran, why it ends cancelled. In
    the same statement as the state (:func:`unless_cancelled`): the history's event and the
    `on-cancelled` hook, recorded by the state's trigger, have it."""
    return (
        f"COALESCE({error}, CASE WHEN \"cancel_requested_at\" IS NULL THEN NULL "
        f"ELSE '{ENDED_AS_CANCELLED}' END)"
    )


def _literal(value: object) -> str:
    if isinstance(value, Sql):
        return value.text
    if value is None:
        return "NULL"
    if isinstance(value, str):  # a State among them
        return "'" + str(value).replace("'", "''") + "'"
    return repr(value)


class Statements:
    """The hot path's statements for one database (``param``: its placeholder)."""

    def __init__(self, param: str, is_sqlite: bool) -> None:
        self.param = param
        self.is_sqlite = is_sqlite
        columns = ", ".join(f'"{name}"' for name in COLUMN_NAMES)
        # A claim also reads the config `job-timeout` the run will get (SPEC: read as the run
        # starts): a statement fewer per job than asking for it next.
        columns += f", {_TIMEOUT_READ}"
        if not is_sqlite:
            # PostgreSQL: and whether the claimed job has dependents (see lean_complete_and_claim).
            columns += f", {_HAS_DEPENDENTS}"
        self.columns = columns
        self._lean: dict[tuple[str, ...] | None, str] = {}
        self._held: dict[tuple[tuple[str, ...] | None, bool], str] = {}
        self._held_lean: dict[tuple[tuple[str, ...] | None, bool], str] = {}
        self._claims: dict[tuple[tuple[str, ...] | None, bool], tuple[str, str | None]] = {}
        self.channel: str | None = None  # PostgreSQL: see announce_to
        self.claim, self.complete_and_claim = self.claims(None)
        # One job claimed by its seq (PostgreSQL's claims in limited queues, see Workflows).
        self.claim_seq = self.claim_where_seq(param)
        names = ", ".join(f'"{name}"' for name in INSERTED)
        values = ", ".join([param] * len(INSERTED))
        self.insert = f'INSERT INTO "job" ({names}) VALUES ({values})'
        self._insert_rows: dict[int, str] = {}
        # SQLite: jobs inserted, counted per (queue, state) (schema 4, 18).
        self.count_inserted = (
            f'INSERT INTO "{schema.COUNTER_TABLE}" ("queue", "state", "n") '
            f"VALUES ({param}, {param}, {param}) "
            'ON CONFLICT ("queue", "state") DO UPDATE SET "n" = "n" + excluded."n"'
        )
        self._same_run: dict[tuple[str, ...], str] = {}

    def insert_rows(self, count: int) -> str:
        """An INSERT of ``count`` jobs in one statement (each row's values in INSERTED's order,
        one after the other)."""
        sql = self._insert_rows.get(count)
        if sql is None:
            head, values, row = self.insert.partition(" VALUES ")  # (one row's insert)
            sql = head + values + ", ".join([row] * count)
            if len(self._insert_rows) < 8:  # (a batch's size, and its last chunk's few)
                self._insert_rows[count] = sql
        return sql

    def announce_to(self, channel: str) -> None:
        """PostgreSQL: the LISTEN/NOTIFY channel of this queue (known once the database is
        open). Schema 11: the complete-and-claim no longer announces itself: the state trigger
        wakes the idle workers of every process when a completed job had dependents, or a run
        ended in a limited queue (see schema._pg_state_function)."""
        self.channel = channel
        self._claims.clear()
        self._lean.clear()
        self._held.clear()
        self._held_lean.clear()
        self.claim, self.complete_and_claim = self.claims(None)

    def claims(
        self, queues: tuple[str, ...] | None, near: bool = True
    ) -> tuple[str, str | None]:
        """The claim, and (SQLite) the complete-and-claim, of a worker that takes jobs of
        ``queues`` only (None: of every queue). Either takes only a ready job (no dependency
        open, SPEC 7) of a queue that is not held (:func:`held_queues`). ``near``: while some
        queue has settings, SQLite's look at the first NEAR entries in claim order before each
        queue's first job (see :func:`unheld_queue`)."""
        statements = self._claims.get((queues, near))
        if statements is None:
            statements = self._claims[queues, near] = self._build_claims(queues, near)
        return statements

    def lean_complete_and_claim(self, queues: tuple[str, ...] | None) -> str | None:
        """PostgreSQL: the complete-and-claim of :meth:`claims` for a job that had no dependents
        when it was claimed (its claim's row says so): it claims the next ready job only, not
        also a dependent of the finished job. Every part of a statement costs its set-up at each
        run, whether it selects anything or not; the dependents' part was ~6% of the statement's
        server instructions for the jobs without dependents, nearly all jobs. A dependent enqueued
        while its dependency runs is counted down and announced by the state trigger (see
        schema._pg_state_function) all the same: an idle worker claims it. None on SQLite."""
        if self.is_sqlite:
            return None
        sql = self._lean.get(queues)
        if sql is None:
            only = queue_filter(queues)
            ready = _first_due(READY, held_queues(counted=False), only, select='"seq"')
            sql = self._lean[queues] = self._pg_complete_and_claim(ready, None)
        return sql

    def held_complete_and_claim(self, queues: tuple[str, ...] | None, near: bool) -> str:
        """PostgreSQL: :meth:`lean_complete_and_claim` while paused queues hold NEAR jobs or more
        (see Workflows._one_statement): the next job is found as :meth:`held_claim` finds it,
        by a probe per queue past the paused backlog, not entry by entry. Run in a transaction
        that plans without sorts, as that claim is: one statement where the result and the
        claim took two, each with its own round trips (a savepoint around the claim). ``near``:
        see :func:`unheld_queue`."""
        sql = self._held_lean.get((queues, near))
        if sql is None:
            seq = _first_unheld_locked(_pg_param("now").text, queues, near)
            sql = self._held_lean[queues, near] = self._pg_complete_and_claim(seq, None)
        return sql

    def claim_where_seq(self, seq: str) -> str:
        """The claim of the job whose seq is ``seq`` (SQL), by the worker and at the times
        given first (its parameters: worker, started_at, updated_at, then those of ``seq``)."""
        param = self.param
        return (
            f'UPDATE "job" SET {_assignments(claimed_run(Sql(param), Sql(param)))} '
            f'WHERE "seq" = {seq} RETURNING {self.columns}'
        )

    def held_claim(self, queues: tuple[str, ...] | None, near: bool) -> str:
        """PostgreSQL: the claim of :meth:`claims` while some queue is paused (planned without
        sorts, see Workflows._claim_row): the first job of the queue :func:`first_unheld`
        finds, not a pass over the held queues' backlogs. ``near``: see :func:`unheld_queue`."""
        sql = self._held.get((queues, near))
        if sql is None:
            seq = _first_unheld_locked(_CLAIM_NOW, queues, near)
            sql = self._held[queues, near] = self._claim_update(seq)
        return sql

    def _claim_update(self, seq: str) -> str:
        """The claim of job ``seq`` (SQL) by the worker (the first parameter) at now (the
        second), each named once and used where wanted (numbered)."""
        if self.is_sqlite:
            given, worker, now = "", "?1", _CLAIM_NOW_SQLITE
        else:  # (psycopg numbers its placeholders in order: "p" is never read)
            given = f'WITH "p" AS (SELECT {self.param}::varchar, {self.param}::double precision) '
            worker, now = "$1::varchar", _CLAIM_NOW
        claim = claimed_run(Sql(worker), Sql(now))
        return (
            f'{given}UPDATE "job" SET {_assignments(claim)} '
            f'WHERE "seq" = {seq} RETURNING {self.columns}'
        )

    def _build_claims(
        self, queues: tuple[str, ...] | None, near: bool
    ) -> tuple[str, str | None]:
        is_sqlite, columns = self.is_sqlite, self.columns
        only = queue_filter(queues)

        def next_due(now: str, held: str) -> str:
            if is_sqlite:
                return claim_first(now, not_held(held), only, near)
            return _first_due(READY, held, only, now=now, select='"seq"')  # (see held_claim)

        # SQLite claims inside its write lock: a limit counted here holds. PostgreSQL's claims
        # run side by side, so this one leaves limited queues to Workflows._claim_limited.
        held = held_queues() if is_sqlite else held_queues(counted=False)
        now = _CLAIM_NOW_SQLITE if is_sqlite else _CLAIM_NOW
        claim_sql = self._claim_update(next_due(now, held))
        if not is_sqlite:  # (run while no queue is held: see Workflows._one_statement)
            return claim_sql, self._pg_complete_and_claim(_first_due(READY, held, only),
                                                          _first_due(_DEPENDENT, held, only))
        # SQLite: a run that succeeded is stored and the next job claimed by one statement
        # (atomic on its own: no BEGIN, no COMMIT; a busy worker's commits halve). It is the
        # same-run update of completed_run() and the claim above, row by row. Parameters: ?1
        # the finished job's seq, ?2 the worker, ?3 now, ?4 exit code, ?5 output, ?6 and ?7 the
        # run's attempts and started_at, ?8 the bytes it printed, ?9 when the run ended.
        done = '"seq" = ?1'
        same_run = _same_run("?2", "?6", "?7", is_sqlite=True)
        completed = completed_run(Sql("?3"), Sql("?4"), Sql("?5"), Sql("?8"), Sql("?9"))
        claimed = claimed_run(Sql("?2"), Sql("?3"))

        def when_done(name: str) -> str:
            value = _literal(completed.get(name, Sql(_quoted(name))))
            if name == "state":
                return unless_cancelled(value)
            return error_unless_cancelled(value) if name == "error" else value

        cases = ", ".join(
            f'"{name}" = CASE WHEN {done} THEN {when_done(name)} '
            f"ELSE {_literal(claimed.get(name, Sql(_quoted(name))))} END"
            for name in [*completed, *(name for name in claimed if name not in completed)]
        )
        # The finished job's output is not read back: the caller has it, and it can be 1 MiB.
        returning = columns.replace('"output"', f'CASE WHEN {done} THEN NULL ELSE "output" END')
        # The finished run no longer counts against its queue's limit: it ends in this statement.
        held_after = held_queues(ending=f"{done} AND {same_run}")
        # The two rows are found by two rowid lookups (SQLite's OR by union, deduplicated in a
        # RowSet), not by `"seq" IN (?1, next)`: that list is a temporary b-tree filled at every
        # run (a pager of its own, its pages zeroed), ~5% of the statement's instructions. The
        # `<> ?1` keeps the two terms apart (SQLite would make them that IN again) and changes
        # nothing: the next job is never one whose run is stored here (if a job rescued and due
        # again were both, it is left alone, as `IN (?1, ?1)` left it: its run is not this one).
        complete_and_claim = (
            f'UPDATE "job" SET {cases} '
            f"WHERE {done} AND {same_run} "
            f'OR "seq" = {next_due("?3", held_after)} AND "seq" <> ?1 '
            f"RETURNING {returning}"
        )  # fmt: skip
        return claim_sql, complete_and_claim

    def _pg_complete_and_claim(self, ready: str, dependents: str | None) -> str:
        """PostgreSQL: the successful run stored and the next job claimed in one statement (one
        round trip, no BEGIN/COMMIT: a busy worker's four round trips a job become one). "done"
        is the same-run update of completed_run(), "next" the claim (limited queues are left to
        Workflows._claim_limited, as in the claim) of the first in claim order of the jobs
        ``ready`` and of ``dependents``: those whose one open dependency is the job that
        completes here (the statement's snapshot does not see the trigger count them down, so
        the dependent of a chain starts in the statement that completes the job before it).

        The parameters, in :meth:`Lifecycle._complete_and_claim`'s order, are its $1 to $9:
        psycopg numbers its placeholders in order, and the nine in "p" give their
        types; "p" itself is never read (the planner drops it). Each use names its parameter
        (``$1``): with "p" joined in, PostgreSQL found the finished job by scanning every
        processing job's entry in "job_state_seq" (dead ones too, a busy queue's many) and
        the claim took InitPlans and CTE scans of "p" on every run."""
        given = ", ".join(f"{self.param}::{kind}" for _, kind in _PG_PARAMS)
        completed = completed_run(_pg_param("now"), _pg_param("exit_code"), _pg_param("output"),
                                  _pg_param("output_bytes"), _pg_param("ended_at"))  # fmt: skip
        completed["state"] = Sql(unless_cancelled(_literal(completed["state"])))
        completed["error"] = Sql(error_unless_cancelled(_literal(completed["error"])))
        same_run = _same_run(_pg_param("worker").text, _pg_param("attempts").text,
                             _pg_param("started_at").text, is_sqlite=False)  # fmt: skip
        claimed = claimed_run(_pg_param("worker"), _pg_param("now"))
        # The finished job's output is not read back: the caller has it, and it can be 1 MiB;
        # nor config `job-timeout`: the caller keeps the one its claim read.
        returning = (
            self.columns.replace('"output"', 'NULL::text AS "output"')
            .replace(_TIMEOUT_READ, "NULL::text")
            .replace(_HAS_DEPENDENTS, "NULL::boolean")
        )
        if dependents is None:  # lean_complete_and_claim: ``ready`` selects the seq only
            first = ready
        else:
            first = (
                f'(SELECT "seq" FROM (SELECT * FROM {ready} AS "r" UNION ALL '
                f'SELECT * FROM {dependents} AS "d") AS "c" '
                'ORDER BY "priority" DESC, "run_at", "seq" LIMIT 1)'
            )
        return (
            f'WITH "p" AS (SELECT {given}), '
            f'"done" AS (UPDATE "job" SET {_assignments(completed)} '
            f'WHERE "seq" = {_pg_param("seq").text} AND {same_run} RETURNING {returning}), '
            f'"next" AS (UPDATE "job" SET {_assignments(claimed)} '
            f'WHERE "seq" = {first} RETURNING {self.columns}) '
            # The commit waits for the WAL's flush (the server's synchronous_commit): a result
            # lost in a crash of the server would run a job that succeeded a second time.
            'SELECT * FROM "done" UNION ALL SELECT * FROM "next"'
        )

    def same_run_update(self, columns: tuple[str, ...]) -> str:
        """UPDATE of ``columns`` of the job (seq, worker) still processing there, in the same
        run (attempts, started_at): a worker presumed lost that claimed the job again must not
        store its old run's result over the new run. A new state is stored unless the job was
        cancelled meanwhile (:func:`unless_cancelled`, and its error
        :func:`error_unless_cancelled`); it returns the state stored."""
        sql = self._same_run.get(columns)
        if sql is None:
            made = {"state": unless_cancelled, "error": error_unless_cancelled}
            assignments = ", ".join(
                f'"{name}" = ' + made.get(name, str)(self.param) for name in columns
            )
            same = _same_run(self.param, self.param, self.param, self.is_sqlite)
            sql = self._same_run[columns] = (
                f'UPDATE "job" SET {assignments} WHERE "seq" = {self.param} AND {same} '
                'RETURNING "state"'
            )
        return sql


# PostgreSQL's complete-and-claim (see Statements._pg_complete_and_claim): its parameters, in
# order, with their types; each is the statement's $n.
_PG_PARAMS = (
    ("seq", "bigint"), ("worker", "varchar"), ("now", "double precision"),
    ("exit_code", "integer"), ("output", "text"), ("attempts", "integer"),
    ("started_at", "double precision"), ("output_bytes", "bigint"),
    ("ended_at", "double precision"),
)  # fmt: skip


def _pg_param(name: str) -> Sql:
    """PostgreSQL's complete-and-claim: its parameter ``name`` (see _PG_PARAMS), typed."""
    for number, (each, kind) in enumerate(_PG_PARAMS, 1):
        if each == name:
            return Sql(f"${number}::{kind}")
    raise KeyError(name)


# PostgreSQL's claims: whether the claimed job has dependents (Lifecycle.finish_and_claim takes
# the lean complete-and-claim for it when not).
_HAS_DEPENDENTS = 'EXISTS (SELECT 1 FROM "job_dep" WHERE "dep_seq" = "job"."seq")'

# A job whose only open dependency is the one the statement completes.
_DEPENDENT = (
    READY.replace('"waiting_on" = 0', '"waiting_on" = 1')
    + f' AND "seq" IN (SELECT "job_seq" FROM "job_dep" WHERE "dep_seq" = {_pg_param("seq").text})'
    + f' AND EXISTS (SELECT 1 FROM "done" WHERE "state" = \'{State.COMPLETED.value}\')'
)


def _first_due(
    where: str, held: str, only: str, *, now: str | None = None,
    select: str = '"seq", "priority", "run_at"',
) -> str:  # fmt: skip
    """PostgreSQL's claims: the first job in claim order, due at ``now`` (the complete-and-claim's
    "p_now"), of those ``where`` selects in a queue not ``held``, locked; its ``select``."""
    now = _pg_param("now").text if now is None else now
    return (
        f'(SELECT {select} FROM "job" WHERE {where} AND "run_at" <= {now} '
        f'AND "queue" NOT IN ({held}){only} ORDER BY {_ORDER} LIMIT 1{_SKIP_LOCKED})'
    )


# How far along the claim order a claim looks for a job of a queue that is not held, before it
# looks at each queue's first job instead (see unheld_queue).
NEAR = 128
_ORDER = '"priority" DESC, "run_at", "seq"'
_SKIP_LOCKED = " FOR UPDATE SKIP LOCKED"
_CLAIM_NOW, _CLAIM_NOW_SQLITE = "$2::double precision", "?2"  # a claim's now (_claim_update)
_NEAR_QUEUE, _EACH_QUEUE = '"n"."queue"', '"q"."name"'
Allowed = Callable[[str], str]  # SQL: whether the queue named by the SQL given may be claimed from


def not_held(held: str) -> Allowed:
    """A queue may be claimed from unless ``held`` (SQL selecting queue names) names it."""
    return lambda queue: f"{queue} NOT IN ({held})"


def claim_first(now: str, allowed: Allowed, only: str, near: bool = True) -> str:
    """SQLite, SQL (a scalar subquery): the seq of the first ready job in claim order due at
    ``now`` (``only``: of those queues) in a queue that is ``allowed`` (not paused, not at its
    limit). With no queue settings (the usual case) the first entry of "job_claim_order";
    else :func:`first_unheld`'s (``near``: see :func:`unheld_queue`)."""
    first = (
        f'SELECT "seq" FROM "job" INDEXED BY "job_claim_order" WHERE {READY} '
        f'AND "run_at" <= {now}{only} ORDER BY {_ORDER} LIMIT 1'
    )
    return (
        f'(CASE WHEN NOT EXISTS (SELECT 1 FROM "queue_setting") THEN ({first}) '
        f"ELSE ({first_unheld(now, allowed, only, is_sqlite=True, near=near)}) END)"
    )


def first_unheld(
    now: str, allowed: Allowed, only: str, *, is_sqlite: bool, lock: str = "", near: bool = True
) -> str:
    """SQL (a SELECT of one seq or none): the first ready job in claim order due at ``now``
    (``only``: of those queues) in a queue ``allowed``, locked by ``lock``: the first of the
    queue :func:`unheld_queue` finds (``near``: see there)."""
    queue = unheld_queue(now, allowed, only, is_sqlite=is_sqlite, near=near)
    if is_sqlite:
        return first_in_queue(queue, now, is_sqlite=True, lock=lock)
    # (The queue found once, OFFSET 0 keeping it a subquery of its own, then probed as each
    # queue's first job is: see unheld_queue.)
    probe = first_in_queue('"t"."name"', now, is_sqlite=False, lock=lock)
    return (
        f'SELECT "h"."seq" FROM (SELECT {queue} AS "name" OFFSET 0) AS "t" '
        f'CROSS JOIN LATERAL ({probe}) AS "h"'
    )


def _first_unheld_locked(now: str, queues: tuple[str, ...] | None, near: bool) -> str:
    """PostgreSQL, SQL (a subquery): the seq of the first ready job due at ``now`` (of
    ``queues``) in a queue neither paused nor limited (:func:`first_unheld`), locked: the held
    claim's and the held complete-and-claim's next job."""
    allowed = not_held(held_queues(counted=False))
    only = queue_filter(queues)
    return f"({first_unheld(now, allowed, only, is_sqlite=False, lock=_SKIP_LOCKED, near=near)})"


def first_in_queue(
    queue: str, now: str, *, is_sqlite: bool, select: str = '"seq"', lock: str = ""
) -> str:
    """SQL: ``select`` of the first ready job of ``queue`` in claim order due at ``now``, in
    QUEUE_CLAIM_INDEX. On PostgreSQL a range, not "queue" = ``queue``: it drops a constant from the
    order, and with statistics taken while few jobs were ready walked "job_claim_order" instead,
    past every other queue's jobs (QA: 39 ms a claim with 300 queues; see also
    History.oldest_waiting)."""
    if is_sqlite:  # (INDEXED BY names the index; ``queue`` said once, computed once)
        where = f'"job" INDEXED BY "{QUEUE_CLAIM_INDEX}" WHERE {READY} AND "queue" = {queue}'
    else:
        where = f'"job" WHERE {READY} AND "queue" >= {queue} AND "queue" <= {queue}'
    return (
        f'SELECT {select} FROM {where} AND "run_at" <= {now} ORDER BY "queue", {_ORDER} '
        f"LIMIT 1{lock}"
    )


def unheld_queue(
    now: str, allowed: Allowed, only: str, *, is_sqlite: bool, near: bool = True
) -> str:
    """SQL (a scalar subquery): the queue of the first ready job in claim order due at ``now``
    (``only``: of those queues) in a queue ``allowed``. Looked for among the first NEAR entries
    of "job_claim_order", else among each queue's first (a probe of QUEUE_CLAIM_INDEX per
    queue with ready jobs; on PostgreSQL see :func:`queue_heads`): a queue held with a backlog
    (paused, or at its limit) was passed over entry by entry at every claim (QA: 20,000 jobs of
    a paused queue made every other queue's claims ~20 times slower). None if no job of an
    allowed queue is due.

    Not ``near``: each queue's first job at once, for a worker that has just seen the first
    NEAR entries held (:func:`window_held`, read at most once a second): the window's NEAR
    steps, taken at every claim only to find nothing, were most of what a held backlog cost
    SQLite's claims (#17, 3 other queues: 0.59-0.69x the claims' rate with one job held,
    0.80-0.83x without them; an instruction count of 119 against 28, now 33), and a quarter of
    PostgreSQL's look for the job (345 against 263 us, the median of 250). The window stays the
    first look otherwise: it finds the job in a step or two where each queue's first costs a
    probe a queue (300 queues: ~1.5 ms a claim)."""
    # SQLite reads the entries in order as it goes, one at a time, and stops at the first of
    # an allowed queue: ordered again, all NEAR were read first (each's row: "queue" is not in
    # the index), and a claim past one held job took twice as long (QA). PostgreSQL keeps the
    # subquery's order without a sort.
    again = "" if is_sqlite else f" ORDER BY {_ORDER}"
    window = (
        f'SELECT "queue" FROM ({_window(now, only, is_sqlite)}) AS "n" '
        f"WHERE {allowed(_NEAR_QUEUE)}{again} LIMIT 1"
    )
    if is_sqlite:  # (no LATERAL: each queue found, then its head's seq, then its row)
        queues = ready_queues(f'"job" INDEXED BY "{READY_QUEUE_INDEX}"', only)
        head = first_in_queue(_EACH_QUEUE, now, is_sqlite=True)
        heads = f'{queues} SELECT "h"."queue" FROM "q" JOIN "job" AS "h" ON "h"."seq" = ({head})'
        each = _EACH_QUEUE
    else:
        heads, each = f'{queue_heads(now, only)} SELECT "h"."queue" FROM "q" AS "h"', '"h"."queue"'
    far = (
        f"{heads} WHERE {allowed(each)} "
        'ORDER BY "h"."priority" DESC, "h"."run_at", "h"."seq" LIMIT 1'
    )
    return f"COALESCE(({window}), ({far}))" if near else f"({far})"


def _window(now: str, only: str, is_sqlite: bool) -> str:
    """SQL: the first NEAR ready jobs in claim order due at ``now`` (``only``: of those
    queues), read from "job_claim_order": their queue, priority, run_at and seq."""
    indexed = ' INDEXED BY "job_claim_order"' if is_sqlite else ""
    return (
        f'SELECT "queue", "priority", "run_at", "seq" FROM "job"{indexed} '
        f'WHERE {READY} AND "run_at" <= {now}{only} ORDER BY {_ORDER} LIMIT {NEAR}'
    )


def window_held(now: str, only: str, *, is_sqlite: bool) -> str:
    """SQL (a row of one boolean): whether some queue has settings and the first NEAR ready
    jobs in claim order due at ``now`` (``only``: of those queues) are all of held queues
    (SQLite: paused, or full as its claim counts them; PostgreSQL: paused or limited, as its
    held claims leave them). A claim that finds so looks at each queue's first job at once
    (:func:`unheld_queue`, not ``near``)."""
    held = held_queues() if is_sqlite else held_queues(counted=False)
    return (
        'SELECT EXISTS (SELECT 1 FROM "queue_setting") AND (SELECT COUNT(*) FROM '
        f'({_window(now, only, is_sqlite)}) AS "n" WHERE "n"."queue" IN ({held})) = {NEAR}'
    )


def queue_heads(now: str, only: str) -> str:
    """PostgreSQL: ``WITH RECURSIVE "q"``: each queue's first ready job in claim order due at
    ``now`` ("queue", "priority", "run_at", "seq"; ``only``: of those queues), each found in
    QUEUE_CLAIM_INDEX past the one before it: a probe a queue, where finding the queues with
    ready jobs (models.ready_queues) and then probing each took two (the part alone, 300
    queues: 2.84 against 3.74 ms a claim; 3 queues: 0.19 against 0.25 ms). A queue with
    nothing due yet is walked past to the next, as its probe walked its entries before."""
    columns = '"queue", "priority", "run_at", "seq"'
    due = f'FROM "job" WHERE {READY} AND "run_at" <= {now}{only}'
    order = f'ORDER BY "queue", {_ORDER} LIMIT 1'
    return (
        f'WITH RECURSIVE "q" AS ((SELECT {columns} {due} {order}) UNION ALL '
        f'SELECT "h".* FROM "q" CROSS JOIN LATERAL (SELECT {columns} {due} '
        f'AND "job"."queue" > "q"."queue" {order}) AS "h")'
    )


def held_queues(*, counted: bool = True, ending: str | None = None) -> str:
    """SQL selecting the names of the queues no job may be claimed from (SPEC 7): the paused
    ones, and those running as many jobs as their limit allows (``counted``; else every limited
    queue). ``ending``: a condition on the job row of a run that ends in the same statement,
    not counted. With no settings (the usual case) it reads one empty table."""
    if not counted:
        return 'SELECT "name" FROM "queue_setting" WHERE "paused" OR "max_running" IS NOT NULL'
    running = (
        f'SELECT COUNT(*) FROM "job" WHERE "state" = \'{State.PROCESSING.value}\' '
        'AND "queue" = "s"."name"'
    )
    if ending is not None:
        running += f" AND NOT ({ending})"
    return (
        'SELECT "s"."name" FROM "queue_setting" AS "s" WHERE "s"."paused" OR '
        f'("s"."max_running" IS NOT NULL AND "s"."max_running" <= ({running}))'
    )


def queue_filter(queues: tuple[str, ...] | None) -> str:
    """`` AND "queue" IN (...)`` for a worker of these queues only (names are validated:
    letters, digits, '.', '_' and '-'), else nothing."""
    if queues is None:
        return ""
    return ' AND "queue" IN (' + ", ".join(_literal(name) for name in queues) + ")"


def _quoted(name: str) -> str:
    return f'"{name}"'


def _assignments(changes: dict[str, object]) -> str:
    return ", ".join(f'"{name}" = {_literal(value)}' for name, value in changes.items())


def _same_run(worker: str, attempts: str, started_at: str, is_sqlite: bool) -> str:
    """The job is still in the run ``worker`` started: processing there, with the attempts and
    start time that run gave it."""
    same = "IS" if is_sqlite else "IS NOT DISTINCT FROM"
    # PostgreSQL: the state as no index can test it (it is never NULL: the same test), so that
    # the job is found by its seq. Tested by `=`, the planner could take the processing jobs'
    # range of "job_state_seq" or "job_state_finished" instead, and step through each entry a
    # claim left there (dead ones too, until a scan marks them).
    state = '"state" =' if is_sqlite else f'"state" {same}'
    return (
        f"{state} '{State.PROCESSING.value}' AND \"worker\" {same} {worker} "
        f'AND "attempts" = {attempts} AND "started_at" {same} {started_at}'
    )
