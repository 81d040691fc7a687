"""GET /api/health/ (API.md §4)."""

from __future__ import annotations

from videoflix.platform.services import check_health
from videoflix.web import schemas
from videoflix.web.base import BaseHandler, public
from videoflix.web.operation import Response, operation


class HealthHandler(BaseHandler):
    @operation(
        "Liveness of the server, PostgreSQL and Redis",
        responses={200: Response("All up", schemas.HEALTH), 503: Response("A dependency is down", schemas.HEALTH)},
    )
    @public
    async def get(self) -> None:
        report = await check_health(self.services)
        self.write_json(report, 200 if report["status"] == "ok" else 503)


ROUTES = [(r"/api/health/", HealthHandler)]
