"""``simkeep worker`` and ``simkeep jobs``: run the queue, look at it, retry dead jobs."""

from __future__ import annotations

from typing import Annotated

import typer

from simkeep.cli_support import JSON_OPTION, emit, fail, load_settings, open_engine, open_session
from simkeep.errors import DomainError
from simkeep.models import Job, JobState

app = typer.Typer(help="The background job queue.", no_args_is_help=True)


def worker(
    exit_when_idle: Annotated[
        bool, typer.Option("--exit-when-idle", help="Return once no job is due (for cron and tests).")
    ] = False,
    batch: Annotated[int | None, typer.Option("--batch", min=1, max=5000, help="Jobs per batch.")] = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """Carry out queued and scheduled jobs until stopped (SIGTERM or Ctrl-C finish the current batch)."""
    from simkeep.db.engine import make_session_factory
    from simkeep.jobs.worker import Worker

    settings = load_settings()
    with open_engine(settings) as engine:
        runner = Worker(settings, make_session_factory(engine), batch_size=batch)
        runner.install_signal_handlers()
        report = runner.run(exit_when_idle=exit_when_idle)
    emit(
        {"done": report.done, "failed": report.failed, "dead": report.dead, "scheduled": report.scheduled},
        as_json=as_json,
        text=f"worker stopped: {report.done} done, {report.failed} failed tries, {report.dead} dead",
    )


def _row(job: Job) -> dict[str, object]:
    return {
        "id": job.id,
        "kind": job.kind,
        "key": job.key,
        "state": str(job.state),
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "run_at": job.run_at.isoformat(),
        "last_error": job.last_error,
    }


@app.command("list")
def list_command(
    state: Annotated[JobState | None, typer.Option("--state", help="Only jobs in this state.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000)] = 50,
    as_json: bool = JSON_OPTION,
) -> None:
    """The newest jobs (dead ones with ``--state dead``) and how many are in each state."""
    from simkeep.jobs import service

    settings = load_settings()
    with open_session(settings) as session:
        jobs = [_row(j) for j in service.list_jobs(session, state=state, limit=limit)]
        counts = service.counts(session)
    lines = [", ".join(f"{k} {v}" for k, v in counts.items())]
    lines += [
        f"{j['id']:>8}  {j['state']:<8} {j['kind']:<24} try {j['attempts']}/{j['max_attempts']}  "
        f"{j['last_error'] or ''}"[:160]
        for j in jobs
    ]
    emit({"counts": counts, "jobs": jobs}, as_json=as_json, text="\n".join(lines))


@app.command("retry")
def retry_command(
    ids: Annotated[list[int] | None, typer.Argument(help="Ids of dead jobs.")] = None,
    all_dead: Annotated[bool, typer.Option("--all-dead", help="Retry every dead job.")] = False,
    as_json: bool = JSON_OPTION,
) -> None:
    """Queue dead jobs again with fresh tries (audited)."""
    from simkeep.audit.service import record
    from simkeep.jobs import service

    if bool(ids) == all_dead:
        raise fail("name job ids or give --all-dead (not both)", as_json=as_json, code="USAGE", exit_code=2)
    settings = load_settings()
    with open_session(settings) as session:
        try:
            wanted = service.dead_ids(session) if all_dead else list(ids or [])
            retried = [j.id for j in service.retry(session, wanted)]
        except DomainError as exc:
            session.rollback()
            raise fail(str(exc), as_json=as_json, code=exc.code) from None
        if retried:
            record(
                session,
                actor="cli",
                action="jobs.retried",
                subject_type="system",
                subject_id="jobs",
                data={"ids": retried[:1000], "count": len(retried)},
            )
        session.commit()
    emit({"retried": retried}, as_json=as_json, text=f"{len(retried)} job(s) queued again")
