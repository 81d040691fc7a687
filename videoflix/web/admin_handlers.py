"""The admin console's JSON API, /api/admin/ (issue 24): users, the transcode queue,
every user's videos and the audit log. The logic is console/'s (the `videoflix
users|jobs` commands call the same functions).

Every route is @admin (401 anonymous, 403 for users). Changes (PATCH, POST, DELETE)
follow API.md §5 like every unsafe request (origin, JSON), and also need the CSRF
header when the credentials are cookies (requestrules.check_csrf), and each spends
one of the admin's action budget (console/guard.py: 429 with Retry-After beyond).
"""

from __future__ import annotations

from typing import Any

from videoflix.accounts import flows
from videoflix.console import audit, guard, job_admin, queries, user_admin, video_admin
from videoflix.console.audit import Actor
from videoflix.platform import clientaddr
from videoflix.web import requestrules, schemas
from videoflix.web.base import APIError, BaseHandler, admin
from videoflix.web.operation import QueryParam, Response, operation

THROTTLED = "Too many admin actions: try again in a minute."
LAST_ADMIN = "This is the last active admin: make another admin first."
CHANGE_ANSWERS: dict[int, Any] = {
    403: f"Not an admin, or a cookie-authenticated change without the CSRF header "
    f"({requestrules.CSRF_FAILED!r}: send the csrftoken cookie's value in X-CSRFToken)",
    429: f"Over {guard.ACTIONS_PER_WINDOW} changes by this admin in {guard.WINDOW_SECONDS} s (Retry-After)",
}
PAGING = (
    QueryParam("limit", "Page size", {"type": "integer", "minimum": 1, "maximum": 100}),
    QueryParam("offset", "How many to skip", {"type": "integer", "minimum": 0}),
)


class AdminHandler(BaseHandler):
    """An /api/admin/ route: the CSRF header on changes, then (in `act`) the throttle."""

    def prepare(self) -> None:
        super().prepare()
        if self.request.method in requestrules.UNSAFE_METHODS:
            cookies = {name: morsel.value for name, morsel in self.request.cookies.items()}
            try:
                requestrules.check_csrf(self.request.headers, cookies)
            except requestrules.RuleViolation as exc:
                raise APIError(exc.status, body=exc.body) from None

    async def act(self) -> Actor:
        """The acting admin (already authenticated by @admin), their action counted."""
        user = self.current_user
        wait = await guard.reserve_action(self.services, user.user_id)
        if wait is not None:
            raise APIError(429, THROTTLED, headers={"Retry-After": str(wait)})
        address = clientaddr.client_address(
            self.request.remote_ip or "", self.request.headers, self.config.trusted_proxies
        )
        return await audit.actor_of(self.services, user.user_id, address)

    def query_args(self) -> dict[str, str]:
        """The query string, one value per name (the last), as text."""
        return {name: values[-1].decode("utf-8", "replace") for name, values in self.request.query_arguments.items()}


def _bad_query(exc: queries.QueryError) -> APIError:
    return APIError(400, body=exc.errors)


class AdminUserListHandler(AdminHandler):
    @operation(
        "Admin: users, with their usage",
        query=(
            QueryParam("search", "Part of the email"),
            QueryParam("active", "Only active (true) or inactive (false) accounts", {"type": "boolean"}),
            QueryParam("admin", "Only admins (true) or users (false)", {"type": "boolean"}),
            QueryParam("order", "Sort order", {"enum": list(user_admin.ORDERS)}),
            *PAGING,
        ),
        responses={200: schemas.ADMIN_USER_PAGE, 400: "A bad filter (field errors)"},
    )
    @admin
    async def get(self) -> None:
        try:
            query = user_admin.parse_query(self.query_args())
        except queries.QueryError as exc:
            raise _bad_query(exc) from None
        self.write_json(await user_admin.list_users(self.services, query))


class AdminUserHandler(AdminHandler):
    @operation(
        "Admin: one user",
        params=(schemas.USER_ID,),
        responses={200: schemas.ADMIN_USER, 404: "No such user"},
    )
    @admin
    async def get(self, user_id: str) -> None:
        try:
            self.write_json(await user_admin.get_user(self.services, int(user_id)))
        except user_admin.UserNotFound:
            raise APIError(404) from None

    @operation(
        "Admin: activate or deactivate, promote or demote a user",
        description="Deactivating or demoting ends every session, event stream and token of the user at once. "
        "A promotion takes effect at the user's next token refresh.",
        json=schemas.ADMIN_USER_CHANGES,
        responses={
            200: schemas.ADMIN_USER,
            400: "Not booleans, or nothing to change",
            404: "No such user",
            409: LAST_ADMIN,
            **CHANGE_ANSWERS,
        },
    )
    @admin
    async def patch(self, user_id: str) -> None:
        try:
            changes = user_admin.check_changes(self.json_body(user_admin.CHANGE_FIELDS))
        except queries.QueryError as exc:
            raise _bad_query(exc) from None
        except user_admin.NothingToChange:
            raise APIError(400, "Nothing to change: send is_active or is_admin.") from None
        actor = await self.act()
        try:
            self.write_json(await user_admin.update_user(self.services, actor, int(user_id), changes))
        except user_admin.UserNotFound:
            raise APIError(404) from None
        except user_admin.LastAdmin:
            raise APIError(409, LAST_ADMIN) from None

    @operation(
        "Admin: delete a user with all their videos",
        description="Rows, sources, versions, images, subtitles, watch positions and queue entries; "
        "running jobs of their videos stop. The answer says what was removed.",
        responses={200: schemas.ADMIN_USER_DELETED, 404: "No such user", 409: LAST_ADMIN, **CHANGE_ANSWERS},
    )
    @admin
    async def delete(self, user_id: str) -> None:
        actor = await self.act()
        try:
            self.write_json(await user_admin.delete_user(self.config, self.services, actor, int(user_id)))
        except user_admin.UserNotFound:
            raise APIError(404) from None
        except user_admin.LastAdmin:
            raise APIError(409, LAST_ADMIN) from None


class AdminUserMailHandler(AdminHandler):
    purpose = "activate"

    async def send_mail(self, user_id: str) -> None:
        actor = await self.act()
        try:
            await user_admin.mail_link(self.config, self.services, actor, int(user_id), self.purpose)
        except user_admin.UserNotFound:
            raise APIError(404) from None
        except user_admin.NotActivatable:
            raise APIError(
                409, "The account is active, or was and has been deactivated: nothing to activate."
            ) from None
        except flows.Throttled as exc:
            raise APIError(
                429,
                "This address has had too many emails this hour. Try again later.",
                headers={"Retry-After": str(exc.retry_after)},
            ) from None
        self.set_status(202)
        self.write_json({"detail": "Email sent."}, 202)


class AdminUserActivationHandler(AdminUserMailHandler):
    purpose = "activate"

    @operation(
        "Admin: send the activation email again",
        params=(schemas.USER_ID,),
        responses={
            202: Response("Sent", schemas.MESSAGE),
            404: "No such user",
            409: "Already active, or deactivated by an admin",
            **CHANGE_ANSWERS,
            429: "Too many admin changes, or the recipient's mail budget (3 an hour) is spent (Retry-After)",
        },
    )
    @admin
    async def post(self, user_id: str) -> None:
        await self.send_mail(user_id)


class AdminUserPasswordResetHandler(AdminUserMailHandler):
    purpose = "reset"

    @operation(
        "Admin: email the user a password-reset link",
        params=(schemas.USER_ID,),
        responses={
            202: Response("Sent", schemas.MESSAGE),
            404: "No such user",
            **CHANGE_ANSWERS,
            429: "Too many admin changes, or the recipient's mail budget (3 an hour) is spent (Retry-After)",
        },
    )
    @admin
    async def post(self, user_id: str) -> None:
        await self.send_mail(user_id)


class AdminJobListHandler(AdminHandler):
    @operation(
        "Admin: the transcode queue: queued, running, failed and dead-lettered jobs",
        responses={200: schemas.JOB_LIST},
    )
    @admin
    async def get(self) -> None:
        self.write_json(await job_admin.list_jobs(self.services))


JOB_CONFLICT = "Not in a state that allows it (the detail says why)"


class AdminJobHandler(AdminHandler):
    @operation(
        "Admin: discard a dead letter",
        params=(schemas.JOB_ID,),
        responses={204: "Discarded", 404: "No such dead letter", 409: "Not a dead letter", **CHANGE_ANSWERS},
    )
    @admin
    async def delete(self, job_id: str) -> None:
        actor = await self.act()
        try:
            await job_admin.discard(self.services, actor, job_id)
        except job_admin.JobNotFound:
            raise APIError(404) from None
        except job_admin.JobConflict as exc:
            raise APIError(409, str(exc)) from None
        self.set_status(204)
        self.finish()


class AdminJobRetryHandler(AdminHandler):
    @operation(
        "Admin: run a failed or dead-lettered job again",
        params=(schemas.JOB_ID,),
        responses={
            202: Response("Queued again", schemas.JOB_CHANGED),
            404: "No such job",
            409: JOB_CONFLICT,
            **CHANGE_ANSWERS,
        },
    )
    @admin
    async def post(self, job_id: str) -> None:
        actor = await self.act()
        try:
            self.write_json(await job_admin.retry(self.config, self.services, actor, job_id), 202)
        except job_admin.JobNotFound:
            raise APIError(404) from None
        except job_admin.JobConflict as exc:
            raise APIError(409, str(exc)) from None


class AdminJobCancelHandler(AdminHandler):
    @operation(
        "Admin: cancel a queued or running job",
        description="The video becomes failed (Cancelled by an administrator.); a running ffmpeg stops "
        "within a second and nothing of the run is published.",
        params=(schemas.JOB_ID,),
        responses={
            200: Response("Cancelled", schemas.JOB_CHANGED),
            404: "No such job",
            409: JOB_CONFLICT,
            **CHANGE_ANSWERS,
        },
    )
    @admin
    async def post(self, job_id: str) -> None:
        actor = await self.act()
        try:
            self.write_json(await job_admin.cancel(self.services, actor, job_id))
        except job_admin.JobNotFound:
            raise APIError(404) from None
        except job_admin.JobConflict as exc:
            raise APIError(409, str(exc)) from None


class AdminVideoListHandler(AdminHandler):
    @operation(
        "Admin: every user's videos, in every state",
        query=(
            QueryParam("status", "Only this status", {"enum": list(video_admin.STATUSES)}),
            QueryParam("visibility", "Only this visibility", {"enum": list(video_admin.VISIBILITIES)}),
            QueryParam("owner", "Only this user's", {"type": "integer", "minimum": 1}),
            QueryParam("search", "Part of the title"),
            QueryParam("order", "Sort order", {"enum": list(video_admin.ORDERS)}),
            *PAGING,
        ),
        responses={200: schemas.ADMIN_VIDEO_PAGE, 400: "A bad filter (field errors)"},
    )
    @admin
    async def get(self) -> None:
        try:
            query = video_admin.parse_query(self.query_args())
        except queries.QueryError as exc:
            raise _bad_query(exc) from None
        self.write_json(await video_admin.list_videos(self.services, query))


class AdminVideoBulkHandler(AdminHandler):
    @operation(
        "Admin: transcode again, make private or delete many videos",
        description="Each video is its own change with its own audit entry; one request counts once "
        f"against the throttle and names at most {video_admin.MAX_BULK_IDS} videos.",
        json=schemas.BULK_REQUEST,
        responses={200: schemas.BULK_RESULT, 400: "Field errors", **CHANGE_ANSWERS},
    )
    @admin
    async def post(self) -> None:
        try:
            request = video_admin.check_bulk(self.json_body(("action", "ids")))
        except queries.QueryError as exc:
            raise _bad_query(exc) from None
        actor = await self.act()
        self.write_json(await video_admin.bulk(self.config, self.services, actor, request))


class AdminAuditHandler(AdminHandler):
    @operation(
        "Admin: the audit log, newest first",
        query=(
            QueryParam("action", "Only this action", {"enum": list(audit.ACTIONS)}),
            QueryParam("target_type", "Only actions on this kind of thing", {"enum": list(audit.TARGET_TYPES)}),
            QueryParam("target_id", "Only actions on this one (with target_type)"),
            QueryParam("actor", "Only this admin's (a user id)", {"type": "integer", "minimum": 1}),
            QueryParam("before", "Older than this entry id (the previous page's next_before)", {"type": "integer"}),
            QueryParam("limit", "Page size", {"type": "integer", "minimum": 1, "maximum": audit.MAX_PAGE}),
        ),
        responses={200: schemas.AUDIT_PAGE, 400: "A bad filter (field errors)"},
    )
    @admin
    async def get(self) -> None:
        try:
            query = audit.parse_query(self.query_args())
        except queries.QueryError as exc:
            raise _bad_query(exc) from None
        self.write_json(await audit.list_entries(self.services, query))


USER_ID = r"([1-9][0-9]{0,17})"
JOB_ID = rf"({job_admin.JOB_ID_ROUTE})"
ROUTES = [
    (r"/api/admin/users/", AdminUserListHandler),
    (rf"/api/admin/users/{USER_ID}/", AdminUserHandler),
    (rf"/api/admin/users/{USER_ID}/activation/", AdminUserActivationHandler),
    (rf"/api/admin/users/{USER_ID}/password_reset/", AdminUserPasswordResetHandler),
    (r"/api/admin/jobs/", AdminJobListHandler),
    (rf"/api/admin/jobs/{JOB_ID}/", AdminJobHandler),
    (rf"/api/admin/jobs/{JOB_ID}/retry/", AdminJobRetryHandler),
    (rf"/api/admin/jobs/{JOB_ID}/cancel/", AdminJobCancelHandler),
    (r"/api/admin/videos/", AdminVideoListHandler),
    (r"/api/admin/videos/bulk/", AdminVideoBulkHandler),
    (r"/api/admin/audit/", AdminAuditHandler),
]
