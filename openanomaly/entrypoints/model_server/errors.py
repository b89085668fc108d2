"""The model server's refusals: an HTTP status and a message the client can act on."""

from __future__ import annotations

from fastapi.responses import JSONResponse


class ApiError(Exception):
    """An answer other than 200, with a message the client can act on."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def response(self) -> JSONResponse:
        return JSONResponse({"error": self.message}, status_code=self.status)
