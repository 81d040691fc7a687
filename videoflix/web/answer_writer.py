"""Carrying out a delivery/answer.py Answer through a RequestHandler.

The answer says everything (status, headers, body source); a handler only writes it:
an error status is raised as APIError with the answer's headers (JSON body, as every
error), the headers are set in order (Vary added to the CORS handlers' `Vary: Origin`),
and bytes made in memory are written. A file's bytes are the media handlers' to send
(sendfile or chunked reads: media_handlers.py).
"""

from __future__ import annotations

from typing import Any

from videoflix.delivery.answer import Answer, Rendered
from videoflix.web.base import APIError


class AnswerWriterMixin:
    def write_answer(self: Any, answer: Answer) -> None:
        if answer.error:
            raise APIError(answer.status, headers=dict(answer.headers))
        self.set_status(answer.status)
        for name, value in answer.headers:
            if name == "Vary":
                self.add_header(name, value)
            else:
                self.set_header(name, value)
        if answer.with_body and isinstance(answer.body, Rendered):
            self.write(answer.body.data)
