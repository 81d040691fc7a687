"""GET /api/health/ (API.md §4)."""
from __future__ import annotations

from videoflix.platform.services import check_health
from videoflix.web.base import BaseHandler, public


class HealthHandler(BaseHandler):
    @public
    async def get(self) -> None:
        report = await check_health(self.services)
        self.write_json(report, 200 if report["status"] == "ok" else 503)


ROUTES = [(r"/api/health/", HealthHandler)]
