"""The task queries of `Client`: fetch, fetch_many, list_tasks, image_seed, cancel,
server_info.

Snapshots come through the client's `BatchFetcher` (the same one the poller reads), so
a route found missing while polling is not asked again here, and the reverse.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ._base import BaseClient
from ._batch import BatchRoute
from ._detect import ServerInfo, classify_probe
from ._detect import probe as detect_probe
from ._errors import APIError, RouteNotFoundError
from ._models import Task, TaskRef, task_id_of, task_path
from ._responses import as_route_not_found, read_body, route_missing, submission_or_raise
from ._serde import decode_task, decode_tasks
from ._transport import Response

__all__ = ["TaskQueries"]


class TaskQueries(BaseClient):
    """The query coroutines of `Client` (a mixin; see `Client` for the arguments)."""

    async def fetch(self, task_id: TaskRef) -> Task:
        """The current snapshot of one task.

        Raises:
            mjasync.TaskNotFoundError: the server does not know the id (empty 200, 204,
                code 3 or 4 "task_no_found"), at once.
            mjasync.RouteNotFoundError: the server has no fetch route there (a 404 or
                405 that is not the proxy's JSON, a web page): check the base URL.
            mjasync.InvalidRequestError: *task_id* cannot be a task id; nothing sent.
        """
        return decode_task(await self._fetcher.fetch_one(task_id_of(task_id)))

    async def fetch_many(self, task_ids: Iterable[TaskRef]) -> list[Task]:
        """Snapshots of many tasks, batched; ids the server does not know are left out.

        Uses ``list-by-condition``, falling back to ``list-by-ids`` and then to one fetch
        per id on servers that lack it; the choice is remembered for this client.
        """
        ids = list(dict.fromkeys(task_id_of(t) for t in task_ids))
        tasks: list[Task] = []
        size = self.poll.batch_size
        for start in range(0, len(ids), size):
            tasks.extend(decode_tasks(await self._fetcher.fetch_batch(ids[start : start + size])))
        return tasks

    @property
    def batch_route(self) -> BatchRoute:
        """How this client polls: ``list-by-condition``, ``list-by-ids`` or ``fetch``."""
        return self._fetcher.route

    async def list_tasks(self) -> list[Task]:
        """Every task the server lists (``GET /mj/task/list``), as it orders them.

        novicezk's proxy lists all the tasks it keeps, newest first; trueai the latest
        100. new-api has no such route. Entries that are not tasks are left out.

        Raises:
            mjasync.RouteNotFoundError: the server has no ``GET /mj/task/list``.
        """
        where = self._where("GET", "/task/list")

        def parse(response: Response) -> list[Task]:
            body = read_body(response, where)
            return decode_tasks(body if body is not None else [])

        try:
            return await self._request("GET", "/task/list", parse)
        except APIError as error:
            if isinstance(error, RouteNotFoundError) or not route_missing(error):
                raise
            # A 501, or a proxy's own JSON 404: still no such route here.
            raise as_route_not_found(error, where) from error

    async def image_seed(self, task_id: TaskRef) -> str:
        """The seed of a finished task (the proxy may take ~60 s to ask Discord)."""
        target = task_id_of(task_id)
        path = task_path(target, "image-seed")
        where = self._where("GET", path)

        def parse(response: Response) -> str:
            body = read_body(response, where, task_id=target)
            submission = submission_or_raise(body, where, response.status, task_id=target)
            return submission.task_id or ""

        return await self._request("GET", path, parse, timeout=self._image_seed_timeout)

    async def cancel(self, task_id: TaskRef) -> None:
        """Ask the server to cancel a task (PLUS: status CANCEL; trueai: admins only).

        trueai answers an empty 200 whether or not it knows the id (and whether or not
        the task could still be cancelled), so that answer is confirmed with one fetch:
        an unknown id raises instead of passing for a cancelled task.

        Raises:
            mjasync.TaskNotFoundError: the server does not know the id.
            mjasync.APIError: refused (trueai's "演示模式，禁止操作" for a non-admin key).
        """
        target = task_id_of(task_id)
        path = task_path(target, "cancel")
        where = self._where("POST", path)

        def parse(response: Response) -> bool:
            body = read_body(response, where, task_id=target)
            if isinstance(body, Mapping) and "code" in body:
                code = body.get("code")
                if code not in {1, 22}:
                    submission_or_raise(body, where, response.status, task_id=target)
            return body is None

        if await self._request("POST", path, parse):
            # trueai TaskController.cs Cancel: `return Ok()` for known and unknown ids alike.
            await self.fetch(target)

    async def server_info(self, *, probe: bool = True) -> ServerInfo:
        """What this server was detected to be, and which routes and features it honours.

        The verdict (``dialect``: ``"oss"``, ``"plus"``, ``"trueai"``, ``"newapi"`` or
        ``"unknown"``) and each feature rest on evidence the client gathers as it works:
        the fields of task JSON (trueai's ``isCompleted``, new-api's ``maskBase64``,
        novicezk's missing ``buttons``, PLUS's ``finalZhPrompt``), routes that answered
        or were missing, new-api's web page for unknown routes, notifications received.
        ``ServerInfo.evidence`` says which. With *probe* (the default), the first call
        also sends a few free GETs, never a submit: a GET on a POST-only route answers
        405 where the route exists and 404 where it does not (new-api answers its web
        page); ``GET /task/0/image-seed`` answers the proxy's own not-found JSON.

        What the client does with it: on trueai, which has no channel id, an
        `AccountFilter`'s ``channel_id`` is not sent; without ``/submit/action``, U/V
        and reroll go through ``/submit/change`` (see `action`).

        Raises:
            mjasync.TransportError: every probe failed to reach the server.
        """
        if probe and not self._probed and not self._closed:
            await detect_probe(
                self._server,
                lambda path: self._request("GET", path, classify_probe, record=False),
            )
            self._probed = True
        return self._server.snapshot(notify_hook=self._hooks.url is not None)
