"""Crash safety: the registry of worker processes, their heartbeats and stop requests, and the
rescue of jobs whose worker is gone (SPEC 3: failed runs, "worker lost", by the retry rules)."""

from __future__ import annotations

import os
import secrets

import peewee

from .lifecycle import Lifecycle
from .models import UNFINISHED, Job, State, WorkerProcess
from .procs import kill_leftovers, pid_running, process_space

WORKER_LOST = "worker lost"


class Registry(Lifecycle):
    def register_worker(self, threads: int, started_at: float | None = None) -> str:
        """Add a pool of this process to the registry; returns its id, ``host:pid:tag``. The tag
        is random and short, so it is drawn again if the id is taken: by another pool of this
        process (one in 65,536 for two), or by a dead process that had the same pid.

        ``started_at``: when this process started (the clock's time). A `worker stop` on this
        host since then asks the pool to stop, as it would have asked it had it been registered
        (QA: `worker start &` then `worker stop` missed the worker still starting, and it ran
        on). Other hosts' clocks are not compared with this one's."""
        WorkerProcess = self.models.WorkerProcess
        with self._write():
            now = self.clock()
            asked = started_at is not None and self._stop_asked_since(started_at)
            while True:
                worker_id = f"{self.host}:{os.getpid()}:{secrets.token_hex(2)}"
                row = dict(id=worker_id, host=self.host_key, pid=os.getpid(), threads=threads,
                           started_at=now, heartbeat_at=now, stop_requested=asked)  # fmt: skip
                if self.db.execute(WorkerProcess.insert(**row).on_conflict_ignore()).rowcount:
                    return worker_id

    @property
    def host_key(self) -> str:
        """This host in the registry's ``host`` column: its name, and what tells its process
        ids from another's of the same name (see procs.process_space). Only a worker of the
        same key has a pid that means anything here."""
        space = process_space()
        return f"{self.host}#{space}"[:255] if space else self.host

    def _stop_key(self) -> str:
        # (the key holds 64 characters: the process space first, a long host name cut after)
        return f"stop_requested_at@{process_space()}@{self.host}"[:64]

    def _stop_asked_since(self, moment: float) -> bool:
        """Whether `worker stop` ran on this host at ``moment`` or later. On PostgreSQL read
        under the lock of the row its write takes (see :meth:`request_stop`): the row is made
        if there is none yet, as a stop's time of 0. Locking only a row that exists missed a
        stop on a database that had none before: it wrote its row, then asked the registered
        workers before this registration committed (CI, once)."""
        SchemaInfo = self.models.SchemaInfo
        key = self._stop_key()
        if self.is_sqlite:  # (the write lock is held: a stop waits for it)
            value = SchemaInfo.select(SchemaInfo.value).where(SchemaInfo.key == key).scalar()
        else:
            made_or_locked = SchemaInfo.insert(key=key, value="0").on_conflict(
                conflict_target=[SchemaInfo.key], update={SchemaInfo.value: SchemaInfo.value}
            )
            value = self.db.execute(made_or_locked.returning(SchemaInfo.value)).fetchone()[0]
        try:
            return value is not None and float(value) >= moment
        except ValueError:
            return False

    def heartbeat(self, worker_id: str, threads: int) -> bool:
        """Record that ``worker_id`` lives. Returns True when it has been asked to stop. On
        SQLite the time recorded is read once the write lock is held: a heartbeat that waited
        out another connection's lock records when it landed, not when it began to wait (landed
        already stale, it would let another worker take this one for gone the moment after)."""
        WorkerProcess = self.models.WorkerProcess
        with self._write():
            now = self.clock()
            updated = (
                WorkerProcess.update(heartbeat_at=now, threads=threads)
                .where(WorkerProcess.id == worker_id)
                .execute()
            )
            if not updated:
                # Presumed dead while it was not (a long pause): its jobs were already rescued.
                WorkerProcess.insert(
                    id=worker_id,
                    host=self.host_key,
                    pid=os.getpid(),
                    threads=threads,
                    started_at=now,
                    heartbeat_at=now,
                ).on_conflict_ignore().execute()
                return False
        return self.stop_requested(worker_id)

    def beat(self, worker_id: str, threads: int) -> tuple[bool, bool]:
        """PostgreSQL: :meth:`heartbeat` and the look for lost workers in one statement, so
        that an idle pool runs one a second: (asked to stop, a rescue is due). A rescue is due
        when another worker is silent past the lease, or gone from this host, or a job runs
        under no registered worker; :meth:`rescue_lost` then does it."""
        now = self.clock()
        row = self.db.execute_sql(
            'WITH "beat" AS (UPDATE "worker" SET "heartbeat_at" = %s, "threads" = %s '
            'WHERE "id" = %s RETURNING "stop_requested") '
            'SELECT (SELECT COUNT(*) FROM "beat"), (SELECT bool_or("stop_requested") FROM "beat"), '
            # Its commit does not wait for the disk (a heartbeat lost in a crash is no loss): the
            # service thread, which wakes the idle threads, is not held by a slow flush.
            "set_config('synchronous_commit', 'off', true), "
            'EXISTS (SELECT 1 FROM "worker" WHERE "heartbeat_at" < %s AND "id" <> %s), '
            '(SELECT array_agg("pid") FROM "worker" WHERE "host" = %s AND "id" <> %s), '
            f'EXISTS (SELECT 1 FROM "job" WHERE "state" = \'{State.PROCESSING.value}\' '
            'AND ("worker" IS NULL OR "worker" NOT IN (SELECT "id" FROM "worker")))',
            (now, threads, worker_id, now - self.lease, worker_id, self.host_key, worker_id),
        ).fetchone()
        beaten, stop, _, silent, pids_here, orphans = row
        if not beaten:  # presumed dead while it was not (a long pause): registered again
            self.heartbeat(worker_id, threads)
            stop = False
        dead_here = any(not pid_running(pid) for pid in pids_here or ())
        return bool(stop), bool(silent or dead_here or orphans)

    def stop_requested(self, worker_id: str) -> bool:
        WorkerProcess = self.models.WorkerProcess
        row = (
            WorkerProcess.select(WorkerProcess.stop_requested)
            .where(WorkerProcess.id == worker_id)
            .scalar()
        )
        return bool(row)

    def unregister_worker(self, worker_id: str) -> None:
        WorkerProcess = self.models.WorkerProcess
        WorkerProcess.delete().where(WorkerProcess.id == worker_id).execute()
        # Idle workers elsewhere wait for announcements: a job this one was to run when it
        # came due (a retry's backoff) is theirs now.
        self._announce()

    def live_workers(self) -> list[WorkerProcess]:
        """Worker processes that are not gone (see :meth:`is_gone`), from any process, on any
        host, oldest first."""
        now = self.clock()
        WorkerProcess = self.models.WorkerProcess
        fresh = WorkerProcess.select().where(WorkerProcess.heartbeat_at >= now - self.lease)
        return [w for w in fresh.order_by(WorkerProcess.started_at) if not self.is_gone(w, now)]

    def registered_workers(self, ids: list[str]) -> list[WorkerProcess]:
        """The worker processes of ``ids`` still in the registry, live or not."""
        WorkerProcess = self.models.WorkerProcess
        return list(WorkerProcess.select().where(WorkerProcess.id.in_(ids)))

    def request_stop(self) -> int:
        """Ask every worker process on this queue to stop gracefully; how many were asked."""
        SchemaInfo = self.models.SchemaInfo
        with self._write():
            self._announce()
            # When, for the workers of this host still starting (see register_worker): first,
            # so that on PostgreSQL a registration reading it waits for this transaction, or
            # this one for the registration (whose row the update below then finds).
            now = repr(self.clock())
            SchemaInfo.insert(key=self._stop_key(), value=now).on_conflict(
                conflict_target=[SchemaInfo.key], update={SchemaInfo.value: now}
            ).execute()
            return self.models.WorkerProcess.update(stop_requested=True).execute()

    def is_gone(self, worker: WorkerProcess, now: float | None = None, silent: bool = True) -> bool:
        """Whether ``worker`` is presumed dead: silent past the lease, or (on this host) its
        process no longer exists. ``silent`` False: only the latter (see rescue_lost)."""
        now = self.clock() if now is None else now
        if silent and worker.heartbeat_at < now - self.lease:
            return True
        return worker.host == self.host_key and not pid_running(worker.pid)

    def rescue_lost(self, silent: bool = True) -> list[Job]:
        """Fail the jobs of workers that are gone (SPEC 3): their lease ran out, or their pid is
        dead on this host. The retry rules then decide what follows. Returns the rescued jobs.
        ``silent`` False: not the workers only silent past the lease (a pool just started, or
        back from its own silence, cannot yet tell them from workers cut off by an outage that
        has just ended, see WorkerPool._beat), only the dead and the jobs of none."""
        Job, WorkerProcess = self.models.Job, self.models.WorkerProcess

        def lost() -> tuple[float, list[WorkerProcess], peewee.ModelSelect] | None:
            """(now, the gone workers, the orphaned jobs), or None if there are none."""
            now = self.clock()
            workers = [w for w in WorkerProcess.select() if self.is_gone(w, now, silent)]
            live = WorkerProcess.select(WorkerProcess.id).where(
                WorkerProcess.id.not_in([w.id for w in workers])
            )
            orphans = Job.select().where(
                Job.state == State.PROCESSING, (Job.worker.is_null()) | Job.worker.not_in(live)
            )
            return (now, workers, orphans) if workers or orphans.exists() else None

        if lost() is None:
            return []  # the usual case: read only, no write lock taken
        rescued = []
        with self._write():
            # Read again under the lock: a worker whose heartbeat landed while this one waited
            # for the lock (both back from the same outage, say) is not gone after all.
            found = lost()
            if found is None:
                return []
            now, workers, orphans = found
            gone = [w.id for w in workers]
            # Gone here, dead or silent (suspended: Ctrl-Z, SIGSTOP): their runs, each in a
            # session of its own, live on, and must stop before the jobs run again.
            gone_here = [w.id for w in workers if w.host == self.host_key]
            self._announce()  # idle workers elsewhere learn of the retries' due times
            if gone:
                WorkerProcess.delete().where(WorkerProcess.id.in_(gone)).execute()
            for job in orphans.clone():
                changes = {
                    **self._failure(job, WORKER_LOST),
                    "exit_code": None,
                    "finished_at": now,
                    "updated_at": now,
                }
                stored = self._finish(job, job.worker, changes)
                if stored is not None:
                    rescued.append(stored)
        for worker_id in gone_here:
            kill_leftovers(worker_id)
        if rescued:
            self._notify()
        return rescued

    def give_back_strays(self, worker_id: str, held: set[int]) -> int:
        """Put back to pending, their attempt not counted, the jobs processing under
        ``worker_id`` other than ``held`` (the seqs its threads hold); how many. See
        WorkerPool._give_back_strays for where such jobs come from."""
        Job = self.models.Job
        now = self.clock()
        with self._write():
            strays = Job.update(
                state=peewee.Case(  # pending again, unless a user cancelled it (SPEC 6)
                    None, [(Job.cancel_requested_at.is_null(), State.PENDING.value)],
                    State.CANCELLED.value,
                ),
                attempts=Job.attempts - 1,
                worker=None,
                started_at=None,
                finished_at=peewee.Case(None, [(Job.cancel_requested_at.is_null(), None)], now),
                updated_at=now,
                ready_at=now,  # its next wait counts from now (see Lifecycle.release)
            ).where(Job.state == State.PROCESSING, Job.worker == worker_id, Job.seq.not_in(list(held)))
            count = strays.execute()
            if count:
                self._announce()
        return count

    def drained(self) -> bool:
        """No job is pending, failed (waiting to retry) or processing."""
        Job = self.models.Job
        return not Job.select().where(Job.state.in_(UNFINISHED)).exists()
