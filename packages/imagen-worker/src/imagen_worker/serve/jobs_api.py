"""The job API: queue, list, show, follow (server-sent events) and cancel the caller's jobs."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from imagen_worker.serve.auth import Owner
from imagen_worker.serve.bodies import JobList, JobRequest, JobView
from imagen_worker.serve.errors import ApiError, documented
from imagen_worker.serve.paging import Before, JobId, Limit, newest_first, next_page
from imagen_worker.serve.queue import (
    JOB_COLUMNS,
    check_fields,
    fields_from_job_request,
    follow,
    insert_job,
    queue_position,
    read_job,
)
from imagen_worker.serve.services import ServicesDep

__all__ = ["router"]

Status = Literal["pending", "running", "done", "failed", "cancelled"]

router = APIRouter(tags=["jobs"])


@router.post(
    "/v1/jobs",
    status_code=201,
    summary="Queue a job (the fields of imagen jobs submit)",
    response_model=JobView,
    responses=documented(404),
)
async def submit(body: JobRequest, services: ServicesDep, owner: Owner) -> JobView:
    fields = fields_from_job_request(body)
    await check_fields(services, fields, owner)
    return JobView.model_validate(await insert_job(services, owner, fields))


@router.get(
    "/v1/jobs",
    summary="The caller's jobs, newest first",
    response_model=JobList,
    responses=documented(),
)
async def list_jobs(
    services: ServicesDep,
    owner: Owner,
    limit: Limit = 20,
    before: Before = None,
    status: Annotated[list[Status] | None, Query(description="only jobs in these states")] = None,
) -> JobList:
    filters = {"id < %(before)s": before, "status = ANY(%(status)s)": status or None}
    where = [condition for condition, value in filters.items() if value is not None]
    query = newest_first(JOB_COLUMNS, "imagen.jobs", "id", where)
    params = {"before": before, "status": status, "limit": limit}
    rows = await services.store.fetch_all(owner, query, params)
    following = next_page("/v1/jobs", rows, limit, status=status)
    return JobList(data=[JobView.model_validate(row) for row in rows], next=following)


@router.get(
    "/v1/jobs/{job_id}",
    summary="One of the caller's jobs",
    response_model=JobView,
    responses=documented(404),
)
async def job(job_id: JobId, services: ServicesDep, owner: Owner) -> JobView:
    view = JobView.model_validate(await read_job(services, owner, job_id))
    if view.status == "pending":
        view.queue_position = await queue_position(services, job_id)
    return view


@router.delete(
    "/v1/jobs/{job_id}",
    summary="Cancel one of the caller's jobs (pending: at once; running: interrupted)",
    responses=documented(404, 409),
)
async def cancel(job_id: JobId, services: ServicesDep, owner: Owner) -> dict[str, int | bool | str]:
    # Row-level security lets an owner flag only their own jobs that have not ended; the
    # database cancels a pending one at once (migration 0005), a running one's worker stops it.
    flagged = await services.store.fetch_one(
        owner,
        "UPDATE imagen.jobs SET cancel_requested = true WHERE id = %s RETURNING status",
        (job_id,),
    )
    if flagged is None:
        row = await read_job(services, owner, job_id)  # 404 when it is not theirs
        raise ApiError(409, f"Job {job_id} has already ended ({row['status']}).")
    row = await read_job(services, owner, job_id)
    return {"id": job_id, "cancel_requested": True, "status": row["status"]}


@router.get(
    "/v1/jobs/{job_id}/events",
    summary="A job's progress, as server-sent events, until it ends",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}, **documented(404)},
)
async def events(
    job_id: JobId, request: Request, services: ServicesDep, owner: Owner
) -> StreamingResponse:
    await read_job(services, owner, job_id)  # 404 before the stream starts
    return StreamingResponse(
        follow(services, owner, job_id, str(request.base_url).rstrip("/")),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
