"""The read side: one job by id or prefix, listings, the TUI's panes, per-state counts and the
throughput chart. Nothing here changes a job."""

from __future__ import annotations

from collections.abc import Iterable

import peewee

from . import schema
from .core import QueueCore
from .errors import QueueError
from .models import READY, STATES, WAITING_ON_DEPENDENCY, Job, State
from .states import check_state  # noqa: F401  (here since the CLI checks states without peewee)

# PostgreSQL counts per connection (schema.counters_by_queue), and the rarer changes in rows
# of their own (schema.COUNTER_CHANGES); once there are this many rows more than one for each
# queue's state, those of connections that are gone, and the changes' rows, are folded into
# shard 0, keeping the sum. (A change's rows not yet committed are not seen by the fold's DELETE:
# they stay, to be folded later.)
_MAX_COUNTER_SHARDS = 100
PG_COUNTER_ROWS = (
    f'SELECT "queue", "state", "n" FROM "{schema.COUNTER_TABLE}" '
    f'UNION ALL SELECT "queue", "state", "n" FROM "{schema.COUNTER_CHANGES}"'
)
_FOLD_COUNTER_SHARDS = (
    f'WITH "gone" AS (DELETE FROM "{schema.COUNTER_TABLE}" WHERE "shard" <> 0 AND "shard" '
    'NOT IN (SELECT "pid" FROM pg_stat_activity WHERE "pid" IS NOT NULL) '
    'RETURNING "queue", "state", "n"), '
    f'"changed" AS (DELETE FROM "{schema.COUNTER_CHANGES}" RETURNING "queue", "state", "n") '
    f'INSERT INTO "{schema.COUNTER_TABLE}" AS c ("queue", "state", "shard", "n") '
    'SELECT "queue", "state", 0, SUM("n") FROM (SELECT "queue", "state", "n" FROM "gone" '
    'UNION ALL SELECT "queue", "state", "n" FROM "changed") AS "folded" '
    'GROUP BY "queue", "state" '
    'ON CONFLICT ("queue", "state", "shard") DO UPDATE SET "n" = c."n" + EXCLUDED."n"'
)
# The columns a listing shows; `output` (up to 1 MiB a job) is fetched only for one job.
LIST_COLUMNS = tuple(field for field in Job._meta.sorted_fields if field.name != "output")
LIST_COLUMN_NAMES = tuple(field.name for field in LIST_COLUMNS)


class WholeId(str):
    """A job's whole id as read from the database (the TUI's rows, a job's dependencies): every
    call that takes an id or a unique prefix of one takes it as that id only. A person types a
    prefix; a program that names a job it has seen means that job, and once it is purged, no
    other (QA: the TUI's `e` on a job purged meanwhile edited `ue3-b`, whose id starts with
    `ue3`; `x` and `r` cancelled and retried such a job)."""

    __slots__ = ()


class Reading(QueueCore):
    def get(self, prefix: str) -> Job:
        """The job whose id is ``prefix`` or uniquely starts with it (a :class:`WholeId`: the
        job of that id only)."""
        if not prefix or not storable(prefix):  # e.g. undecodable bytes from argv: no id has it
            from .text import as_typed  # (not on enqueue's path: it prints only an id)

            raise QueueError(f"no job {as_typed(prefix)}")
        Job = self.models.Job
        job = Job.get_or_none(Job.id == str(prefix))
        if job is not None:
            return job
        if isinstance(prefix, WholeId):
            raise QueueError(f"no job {str(prefix)!r}")
        matches = list(Job.select(Job.id).where(self._id_starts(prefix)).order_by(Job.id).limit(3))
        if not matches:
            raise QueueError(f"no job {prefix!r}")
        if len(matches) > 1:
            shown = ", ".join(m.id for m in matches[:2]) + (", ..." if len(matches) > 2 else "")
            raise QueueError(f"{prefix!r} is ambiguous: it matches {shown}")
        return Job.get(Job.id == matches[0].id)

    def ids_starting(self, prefix: str, state: str | None = None, limit: int = 200) -> list[str]:
        """The ids (of jobs in ``state``) that start with ``prefix``, newest first, at most
        ``limit``: shell completion. Every job is looked at, not only the newest (QA: an older
        dead job's id never completed past 200 newer jobs)."""
        if not storable(prefix):
            return []
        Job = self.models.Job
        query = Job.select(Job.id).where(self._id_starts(prefix))
        if state is not None:
            query = query.where(Job.state == state)
        return [job.id for job in query.order_by(Job.seq.desc()).limit(limit)]

    def _id_starts(self, prefix: str) -> peewee.Expression:
        """The job's id starts with ``prefix`` (case-sensitive)."""
        Job = self.models.Job
        if self.is_sqlite:  # served by the unique index (LIKE would be neither)
            after = _after_prefix(prefix)
            return Job.id >= prefix if after is None else (Job.id >= prefix) & (Job.id < after)
        return peewee.fn.substr(Job.id, 1, len(prefix)) == prefix

    def finished_per_second(self, window: int = 60) -> list[int]:
        """How many jobs finished (completed or dead) in each of the last ``window`` seconds,
        oldest first, by any worker: the TUI's throughput chart. Served by (state, finished_at)."""
        Job = self.models.Job
        end = int(self.clock()) + 1
        start = end - window
        offset = Job.finished_at - start
        # Whole seconds since ``start``: SQLite's CAST truncates, PostgreSQL's rounds.
        second = peewee.Cast(offset if self.is_sqlite else peewee.fn.FLOOR(offset), "INTEGER")
        rows = (
            Job.select(second, peewee.fn.COUNT(Job.seq))
            .where(Job.state.in_((State.COMPLETED, State.DEAD)), Job.finished_at >= start)
            .group_by(peewee.SQL("1"))  # by position: PostgreSQL can't match a bound parameter
            .tuples()
        )
        buckets = [0] * window
        for index, count in rows:
            if 0 <= index < window:
                buckets[index] = count
        return buckets

    def counts(self, fold: bool = True) -> dict[str, int]:
        """Jobs per state. Kept exact by triggers (schema.counters_by_queue): a few rows are read,
        whatever the queue's size. PostgreSQL: where they are many, the rows of connections
        that are gone are folded; not with ``fold`` False (in a read-only :meth:`snapshot`,
        which cannot write: then :meth:`fold_counters`, after it)."""
        totals = dict.fromkeys(STATES, 0)
        for (_, state), count in self.counts_by_queue(fold).items():
            if state in totals:
                totals[state] += count
        return {str(state): count for state, count in totals.items()}

    def counts_by_queue(self, fold: bool = True) -> dict[tuple[str, str], int]:
        """Jobs per (queue, state), for every queue that has or had jobs (zero counts too):
        the counters of :meth:`counts` (schema 18), not a count of the jobs."""
        if self.is_sqlite:
            rows = self.db.execute_sql(
                f'SELECT "queue", "state", "n" FROM "{schema.COUNTER_TABLE}"'
            ).fetchall()
        else:
            rows = self.db.execute_sql(
                f'SELECT "queue", "state", SUM("n"), COUNT(*) FROM ({PG_COUNTER_ROWS}) AS "rows" '
                'GROUP BY "queue", "state"'
            ).fetchall()
            self._counter_shards = sum(shards - 1 for *_, shards in rows)
            if fold:
                self.fold_counters()
        return {(name, state): int(count) for name, state, count, *_ in rows}

    _counter_shards = 0  # PostgreSQL: the rows past one a queue's state, at the last count

    def fold_counters(self) -> None:
        """Fold the count rows of connections that are gone into one, if the last
        :meth:`counts` read too many (QA: a TUI's read-only snapshot tried it, and failed every
        second, "cannot execute INSERT in a read-only transaction", until another process did)."""
        if self._counter_shards > _MAX_COUNTER_SHARDS:
            self.db.execute_sql(_FOLD_COUNTER_SHARDS)
            self._counter_shards = 0

    def list_jobs(
        self,
        state: str | Iterable[str] | None = None,
        limit: int | None = None,
        *,
        with_output: bool = True,
        queue: str | None = None,
        below: int | None = None,
    ) -> list[Job]:
        """Jobs, newest first, optionally of one state (or of any of several), of one queue;
        ``below``: enqueued before the job of that ``seq`` (the next page of a listing)."""
        Job = self.models.Job
        columns = Job._meta.sorted_fields if with_output else self._list_columns()
        query = Job.select(*columns).order_by(Job.seq.desc())
        if below is not None:
            query = query.where(Job.seq < below)
        states = [state] if isinstance(state, str) else list(state or ())
        if len(states) == 1:
            query = query.where(Job.state == check_state(states[0]))
        elif states:
            query = query.where(Job.state.in_([check_state(s) for s in states]))
        if queue is not None:
            query = query.where(Job.queue == queue)
        if limit is not None and limit < 2**63:  # more than SQL can count means no limit
            query = query.limit(limit)
        return list(query)

    def pane(self, pane: str, limit: int, last: bool = False) -> list[Job]:
        """The first ``limit`` jobs of a TUI pane, without their output, in the pane's order:
        ``waiting`` (pending and failed, in claim order), ``processing`` (oldest start first),
        ``completed``, ``dead`` and ``cancelled`` (most recently finished first). ``last``: its
        last ``limit`` jobs instead (still in the pane's order), read from the end of the same
        index."""
        return self._pane(pane, limit, last=last)

    def pane_matching(self, pane: str, limit: int, text: str, last: bool = False) -> list[Job]:
        """The first ``limit`` jobs of a TUI pane (as :meth:`pane`) whose id, command or queue
        contains ``text``, in any case (the TUI's filter). The database matches them (LIKE, with
        ``%``, ``_`` and ``\\`` in ``text`` escaped), walking the pane's index in the pane's
        order and stopping at ``limit``: only the matches shown are loaded, however many jobs
        there are (a text that few jobs contain reads the pane's index to its end)."""
        return self._pane(pane, limit, text, last)

    def _pane(
        self, pane: str, limit: int, text: str | None = None, last: bool = False
    ) -> list[Job]:
        Job = self.models.Job

        def matching(j: type[Job]) -> list[peewee.Expression]:
            if not text:
                return []
            if self.is_sqlite and not text.isascii():
                pattern = _any_case_glob(text)
                return [peewee.Expression(j.id, "GLOB", pattern)
                        | peewee.Expression(j.command, "GLOB", pattern)
                        | peewee.Expression(j.queue, "GLOB", pattern)]  # fmt: skip
            return [j.id.contains(text) | j.command.contains(text) | j.queue.contains(text)]

        if pane == "waiting":
            # Ready jobs in claim order, then those waiting for a dependency (SPEC 7).
            parts = [("job_claim_order", READY), ("job_blocked_order", WAITING_ON_DEPENDENCY)]
            jobs: list[Job] = []
            for index, where in reversed(parts) if last else parts:
                if len(jobs) >= limit:
                    break
                jobs.extend(
                    self._via(
                        index,
                        lambda j: j.select(*(getattr(j, name) for name in LIST_COLUMN_NAMES))
                        .where(peewee.SQL(where), *matching(j))
                        .order_by(*_ordered((j.priority.desc(), j.run_at, j.seq), last))
                        .limit(limit - len(jobs)),
                    ).objects(Job)
                )
            return jobs[::-1] if last else jobs
        query = Job.select(*self._list_columns()).limit(limit)
        if text:
            query = query.where(*matching(Job))
        if pane == "processing":
            order = (Job.started_at, Job.seq)
            query = query.where(Job.state == State.PROCESSING)
        elif pane in (State.COMPLETED, State.DEAD, State.CANCELLED):
            order = (Job.finished_at.desc(), Job.seq.desc())
            query = query.where(Job.state == pane)
        else:
            raise ValueError(f"unknown pane {pane!r}")
        jobs = list(query.order_by(*_ordered(order, last)))
        return jobs[::-1] if last else jobs

    def _list_columns(self) -> tuple[peewee.Field, ...]:
        Job = self.models.Job
        return tuple(getattr(Job, name) for name in LIST_COLUMN_NAMES)


def _ordered(order: tuple, last: bool) -> tuple:
    """``order`` (peewee fields, ascending, or ``.desc()``), reversed when ``last``: the pane's
    last rows are its index read from the other end."""
    if not last:
        return order
    return tuple(term.node.asc() if isinstance(term, peewee.Ordering) and term.direction == "DESC"
                 else term.desc() for term in order)  # fmt: skip


def storable(text: str) -> bool:
    """Whether ``text`` can be stored as text (ids are validated so: UTF-8, no NUL)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def _after_prefix(prefix: str) -> str | None:
    """The least string greater than every string that starts with ``prefix``, in SQLite's
    BINARY order (UTF-8 bytes, i.e. code points); None when there is none (all U+10FFFF)."""
    head = prefix.rstrip("\U0010ffff")
    if not head:
        return None
    following = ord(head[-1]) + 1
    if 0xD800 <= following <= 0xDFFF:  # surrogates are not characters: skip them
        following = 0xE000
    return head[:-1] + chr(following)


def _any_case_glob(text: str) -> str:
    """A GLOB pattern (SQLite) for the texts that contain ``text`` in any case. SQLite's LIKE
    ignores the case of ASCII letters only: `/élan` did not find `Élan`. Each letter with a
    case becomes the class of its cases (``[éÉ]``); GLOB's own characters are classes too."""
    parts = []
    for char in text:
        cases = dict.fromkeys(c for c in (char, char.lower(), char.upper()) if len(c) == 1)
        if len(cases) > 1:
            parts.append("[" + "".join(cases) + "]")
        elif char in "*?[]":
            parts.append(f"[{char}]")
        else:
            parts.append(char)
    return "*" + "".join(parts) + "*"
