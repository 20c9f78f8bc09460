"""How the review pages fail: a page that says what went wrong (never the API's JSON body), and a
sign-in redirect that remembers where the person was going."""

from __future__ import annotations

from urllib.parse import urlencode


class PageError(Exception):
    """A page answered on purpose with `status`: a title and a sentence for the person reading it."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message


class LoginRequired(Exception):  # noqa: N818 (a state: nobody is signed in)
    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path

    @property
    def location(self) -> str:
        return f"/review/login?{urlencode({'next': self.next_path})}"


def csrf_refused() -> PageError:
    return PageError(
        403,
        "Form expired",
        "This form's security token is missing or does not match your session (a form from another "
        "tab, an old page, or a request from another site). Go back, reload the page and try again.",
    )
