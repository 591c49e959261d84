"""The route table: every route of the API, the handler behind it, and the dialects that
serve it (`routes_for`); the handlers live in ``_submit_routes``, ``_action_routes``,
``_task_routes`` and ``_sim_routes``."""

from __future__ import annotations

import dataclasses

from ._action_routes import action, change, modal, simple_change
from ._faults import Route
from ._sim_routes import (
    newapi_image,
    sim_faults,
    sim_image,
    sim_requests,
    sim_stats,
    sim_tasks,
    sim_upload,
    sim_video,
)
from ._submit_routes import blend, describe, edits, imagine, shorten, swap_face, upload, video
from ._submitting import (
    FAULTS_KEY,
    MODE_PREFIXES,
    Handler,
    SubmitBody,
    submit_handler,
)
from ._task_routes import (
    cancel,
    fetch,
    image_seed,
    list_by_condition,
    list_by_ids,
    task_list,
    task_queue,
)

__all__ = ["FAULTS_KEY", "MODE_PREFIXES", "RouteSpec", "routes_for"]

ALL = frozenset({"oss", "plus", "trueai", "newapi"})
NOT_OSS = frozenset({"plus", "trueai", "newapi"})
# Routes novicezk v2.6.3 has (SubmitController.java, TaskController.java); PLUS is its
# closed-source successor and new-api relays /change and /simple-change too
# (router/relay-router.go). trueai removed them in v10.
CHANGE_DIALECTS = frozenset({"oss", "plus", "newapi"})


@dataclasses.dataclass(frozen=True)
class RouteSpec:
    """One route of the API and the dialects that serve it."""

    route: Route
    handler: Handler
    dialects: frozenset[str]
    # Served without a key (the /sim assets, new-api's /mj/image/{id}).
    public: bool = False


def _spec(
    method: str,
    template: str,
    name: str,
    handler: Handler,
    dialects: frozenset[str],
    *,
    creates_task: bool = False,
    public: bool = False,
    serves_image: bool = False,
) -> RouteSpec:
    return RouteSpec(
        Route(method, template, name, creates_task, serves_image), handler, dialects, public
    )


def _submit_spec(
    template: str, name: str, fn: SubmitBody, dialects: frozenset[str], *, creates_task: bool = True
) -> RouteSpec:
    return _spec(
        "POST", template, name, submit_handler(name, fn), dialects, creates_task=creates_task
    )


ROUTES: tuple[RouteSpec, ...] = (
    _submit_spec("/mj/submit/imagine", "imagine", imagine, ALL),
    _submit_spec("/mj/submit/blend", "blend", blend, ALL),
    _submit_spec("/mj/submit/describe", "describe", describe, ALL),
    _submit_spec("/mj/submit/shorten", "shorten", shorten, NOT_OSS),
    _submit_spec("/mj/submit/action", "action", action, NOT_OSS),
    _submit_spec("/mj/submit/modal", "modal", modal, NOT_OSS),
    _submit_spec("/mj/submit/change", "change", change, CHANGE_DIALECTS),
    _submit_spec("/mj/submit/simple-change", "simple-change", simple_change, CHANGE_DIALECTS),
    _submit_spec(
        "/mj/submit/upload-discord-images",
        "upload-discord-images",
        upload,
        NOT_OSS,
        creates_task=False,
    ),
    _submit_spec("/mj/insight-face/swap", "swap", swap_face, NOT_OSS),
    _submit_spec("/mj/submit/edits", "edits", edits, frozenset({"trueai", "newapi"})),
    _submit_spec("/mj/submit/edit", "edit", edits, frozenset({"trueai"})),
    _submit_spec("/mj/submit/video", "video", video, frozenset({"trueai", "newapi"})),
    _spec("GET", "/mj/task/{id}/fetch", "fetch", fetch, ALL),
    _spec("POST", "/mj/task/list-by-condition", "list-by-condition", list_by_condition, ALL),
    _spec(
        "POST", "/mj/task/list-by-ids", "list-by-ids", list_by_ids, frozenset({"plus", "trueai"})
    ),
    _spec("GET", "/mj/task/list", "list", task_list, frozenset({"oss", "plus", "trueai"})),
    _spec("GET", "/mj/task/queue", "queue", task_queue, frozenset({"oss", "plus"})),
    _spec("GET", "/mj/task/{id}/image-seed", "image-seed", image_seed, NOT_OSS),
    _spec("POST", "/mj/task/{id}/cancel", "cancel", cancel, frozenset({"plus", "trueai"})),
    _spec(
        "GET",
        "/mj/image/{id}",
        "image",
        newapi_image,
        frozenset({"newapi"}),
        public=True,
        serves_image=True,
    ),
)

SIM_ROUTES: tuple[RouteSpec, ...] = (
    _spec("GET", "/sim/images/{name}", "images", sim_image, ALL, public=True, serves_image=True),
    _spec("GET", "/sim/uploads/{name}", "uploads", sim_upload, ALL, public=True),
    _spec("GET", "/sim/videos/{name}", "videos", sim_video, ALL, public=True),
    _spec("GET", "/sim/stats", "stats", sim_stats, ALL, public=True),
    _spec("GET", "/sim/faults", "faults", sim_faults, ALL, public=True),
    _spec("GET", "/sim/tasks", "tasks", sim_tasks, ALL, public=True),
    _spec("GET", "/sim/requests", "requests", sim_requests, ALL, public=True),
)


def routes_for(dialect: str, disabled: frozenset[str]) -> list[RouteSpec]:
    """The API routes a ``dialect`` serves, minus the ``disabled`` ones, plus the /sim routes."""
    chosen = [
        spec
        for spec in ROUTES
        if dialect in spec.dialects and not any(spec.route.matches(d) for d in disabled)
    ]
    return chosen + list(SIM_ROUTES)
