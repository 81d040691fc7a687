"""Authentication endpoints, API.md §1."""

from __future__ import annotations

import secrets

from videoflix.accounts import flows
from videoflix.platform import clientaddr
from videoflix.web import schemas
from videoflix.web.base import APIError, BaseHandler, public
from videoflix.web.operation import Response, operation

INVALID_REFRESH = "Invalid refresh token."
REFRESH_MISSING = "Refresh token missing."
INVALID_LINK = "Invalid or expired activation link."
INVALID_RESET_LINK = "Invalid or expired token."
# The JSON keys each endpoint reads (API.md §1); any other key is ignored.
REGISTER_FIELDS = ("email", "password", "confirmed_password")
LOGIN_FIELDS = ("email", "password")
RESET_FIELDS = ("email",)
CONFIRM_FIELDS = ("new_password", "confirm_password")


class AuthHandler(BaseHandler):
    def set_auth_cookie(self, name: str, value: str, max_age: int, httponly: bool = True) -> None:
        self.set_cookie(
            name, value, path="/", max_age=max_age, httponly=httponly, secure=self.config.cookie_secure, samesite="Lax"
        )

    def set_session_cookies(self, issued: flows.IssuedTokens) -> None:
        self.set_auth_cookie("access_token", issued.access, issued.access_max_age)
        self.set_auth_cookie("refresh_token", issued.refresh, issued.refresh_max_age)

    def client_address(self) -> str:
        """The caller's address for the login and mail limits (clientaddr.py)."""
        return clientaddr.client_address(
            self.request.remote_ip or "", self.request.headers, self.config.trusted_proxies
        )

    def refresh_cookie(self) -> str:
        token = self.get_cookie("refresh_token", "")
        if not token:
            raise APIError(400, REFRESH_MISSING)
        return token


class RegisterHandler(AuthHandler):
    @operation(
        "Create an inactive account and email its activation link",
        json=schemas.strings(REGISTER_FIELDS, required=REGISTER_FIELDS),
        responses={
            201: schemas.REGISTERED,
            400: "Field errors: an invalid or taken email, passwords that differ or a weak one",
            429: "The client's mail budget is spent (Retry-After); nothing was created",
        },
    )
    @public
    async def post(self) -> None:
        try:
            user = await flows.register(
                self.config, self.services, self.json_body(REGISTER_FIELDS), self.client_address()
            )
        except flows.FieldErrors as exc:
            raise APIError(400, body=exc.errors) from None
        except flows.Throttled as exc:
            raise APIError(
                429,
                "Too many emails asked for from your address. Try again later.",
                headers={"Retry-After": str(exc.retry_after)},
            ) from None
        self.write_json({"user": user}, 201)


class ActivateHandler(AuthHandler):
    @operation(
        "Activate an account from the emailed link",
        params=(schemas.LINK_UID, schemas.LINK_TOKEN),
        responses={200: Response("Activated (or already active)", schemas.MESSAGE), 400: INVALID_LINK},
    )
    @public
    async def get(self, uidb64: str, token: str) -> None:
        try:
            activated = await flows.activate(self.config, self.services, uidb64, token)
        except flows.InvalidLink:
            raise APIError(400, INVALID_LINK) from None
        message = "Account successfully activated." if activated else "Account already activated."
        self.write_json({"message": message})


class LoginHandler(AuthHandler):
    @operation(
        "Log in: sets the access_token, refresh_token and csrftoken cookies",
        json=schemas.strings(LOGIN_FIELDS, required=LOGIN_FIELDS),
        responses={
            200: schemas.LOGIN,
            400: "Invalid email or password, or an inactive account",
            429: "Too many failed attempts (Retry-After)",
        },
    )
    @public
    async def post(self) -> None:
        try:
            user, issued = await flows.login(
                self.config, self.services, self.json_body(LOGIN_FIELDS), self.client_address()
            )
        except flows.FieldErrors as exc:
            raise APIError(400, body=exc.errors) from None
        except flows.InvalidCredentials:
            raise APIError(400, "Invalid email or password.") from None
        except flows.InactiveAccount:
            raise APIError(400, "Please activate your account first.") from None
        except flows.Throttled as exc:
            raise APIError(
                429, "Too many failed login attempts. Try again later.", headers={"Retry-After": str(exc.retry_after)}
            ) from None
        self.set_session_cookies(issued)
        # Script-readable on purpose: the official frontend echoes it in X-CSRFToken.
        self.set_auth_cookie("csrftoken", secrets.token_urlsafe(32), issued.refresh_max_age, httponly=False)
        self.write_json({"detail": "Login successful", "user": {"id": user["id"], "username": user["email"]}})


class LogoutHandler(AuthHandler):
    @operation(
        "End the session of the refresh cookie: every token of it, at once",
        security=schemas.REFRESH_COOKIE,
        responses={
            200: Response("Logged out; the cookies deleted", schemas.MESSAGE),
            400: f"{REFRESH_MISSING} / {INVALID_REFRESH}",
        },
    )
    @public
    async def post(self) -> None:
        try:
            await flows.logout(self.config, self.services, self.refresh_cookie())
        except flows.InvalidRefreshToken:
            raise APIError(400, INVALID_REFRESH) from None
        for name in ("access_token", "refresh_token", "csrftoken"):
            self.clear_cookie(name, path="/", samesite="Lax", secure=self.config.cookie_secure)
        self.write_json({"detail": "Log-Out successfully! All Tokens will be deleted. Refresh token is now invalid."})


class TokenRefreshHandler(AuthHandler):
    @operation(
        "A new access token (and cookie) from the refresh cookie, which rotates",
        security=schemas.REFRESH_COOKIE,
        responses={200: schemas.REFRESHED, 400: REFRESH_MISSING, 401: f"{INVALID_REFRESH} (expired, forged or spent)"},
    )
    @public
    async def post(self) -> None:
        try:
            issued = await flows.refresh(self.config, self.services, self.refresh_cookie())
        except flows.InvalidRefreshToken:
            raise APIError(401, INVALID_REFRESH) from None
        self.set_session_cookies(issued)
        self.write_json({"detail": "Token refreshed", "access": issued.access})


class PasswordResetHandler(AuthHandler):
    @operation(
        "Email a password-reset link (the same answer for an unknown address or a spent mail budget)",
        json=schemas.strings(RESET_FIELDS, required=RESET_FIELDS),
        responses={200: Response("Sent if the account exists", schemas.MESSAGE), 400: "Not a valid email address"},
    )
    @public
    async def post(self) -> None:
        try:
            await flows.request_password_reset(
                self.config, self.services, self.json_body(RESET_FIELDS), self.client_address()
            )
        except flows.FieldErrors as exc:
            raise APIError(400, body=exc.errors) from None
        self.write_json({"detail": "An email has been sent to reset your password."})


class PasswordConfirmHandler(AuthHandler):
    @operation(
        "Set a new password from the emailed link; every session ends",
        params=(schemas.LINK_UID, schemas.LINK_TOKEN),
        json=schemas.strings(CONFIRM_FIELDS, required=CONFIRM_FIELDS),
        responses={
            200: Response("Password changed", schemas.MESSAGE),
            400: f"Passwords that differ or a weak one (field errors), or {INVALID_RESET_LINK!r}",
        },
    )
    @public
    async def post(self, uidb64: str, token: str) -> None:
        body = self.json_body(CONFIRM_FIELDS)
        try:
            await flows.confirm_password_reset(self.config, self.services, uidb64, token, body)
        except flows.InvalidLink:
            raise APIError(400, INVALID_RESET_LINK) from None
        except flows.FieldErrors as exc:
            raise APIError(400, body=exc.errors) from None
        self.write_json({"detail": "Your Password has been successfully reset."})


# Email-link segments are matched loosely: malformed ones get the 400 that
# API.md names (from flows), not a 404 from the router.
LINK = r"([^/]+)/([^/]+)"
ROUTES = [
    (r"/api/register/", RegisterHandler),
    (rf"/api/activate/{LINK}/", ActivateHandler),
    (r"/api/login/", LoginHandler),
    (r"/api/logout/", LogoutHandler),
    (r"/api/token/refresh/", TokenRefreshHandler),
    (r"/api/password_reset/", PasswordResetHandler),
    (rf"/api/password_confirm/{LINK}/", PasswordConfirmHandler),
]
