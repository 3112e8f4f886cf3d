"""Bug reports as GitHub issues, through the REST API: one issue per report, updated with a comment."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..redact import MASK, redact
from .bugs import Bug, render, utc

if TYPE_CHECKING:
    import requests

    from .config import TrackerSpec

API_VERSION = "2022-11-28"
# GitHub refuses a longer issue body (422 "body is too long").
BODY_LIMIT = 65_536
TOKEN_ENV = ("GH_TOKEN", "GITHUB_TOKEN")

_ISSUE = re.compile(r"/issues/(\d+)$")
_HINTS = {
    401: "check GH_TOKEN",
    403: "the token needs write access to the repository's issues",
    404: "check the repository name, and that the token can see it",
    410: "issues are disabled in the repository",
}


class TrackerError(Exception):
    """The tracker refused a report or could not be reached; one line, without the token."""


def token_from(environ: Mapping[str, str]) -> str | None:
    """The GitHub token of the host: GH_TOKEN, else GITHUB_TOKEN; None when neither is set."""
    for name in TOKEN_ENV:
        value = environ.get(name, "").strip()
        if value:
            return value
    return None


def file_issue(bug: Bug, tracker: TrackerSpec, token: str, *, timeout: float = 10.0) -> str:
    """File a filed report as an issue of `tracker.repo`, or update its issue; returns the issue's page.

    A report whose issue is on record (`bug.url`) gets its body replaced and a comment with
    the new count; the others a new issue labelled `bug` and `priority:<priority>`.
    """
    import requests

    if bug.number is None:
        raise ValueError("a bug report is delivered after it is filed")
    if not tracker.repo:
        raise TrackerError("no repository configured: set monitor.bug_tracker.repo to OWNER/NAME")
    body = _clean(render(bug), token)
    if len(body) > BODY_LIMIT:
        body = body[: BODY_LIMIT - 40] + "\n\n(cut at GitHub's length limit)\n"
    issues = f"{tracker.api_url}/repos/{tracker.repo}/issues"
    with requests.Session() as session:
        session.headers.update(
            {
                "Authorization": f"Bearer {token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": API_VERSION,
                "User-Agent": f"pytest-orchestrator/{__version__}",
            }
        )
        match = _ISSUE.search(bug.url or "")
        if match:
            url = f"{issues}/{match.group(1)}"
            issue = _call(session, "PATCH", url, {"body": body}, timeout, token, missing_ok=True)
            if issue is not None:
                seen = "Frozen" if bug.category == "freeze" else "Crashed"
                comment = (
                    f"{seen} again: {bug.crashes} times so far, the last at {utc(bug.last_seen)}; "
                    f"priority {bug.priority}. The description above is updated."
                )
                _call(session, "POST", f"{url}/comments", {"body": _clean(comment, token)}, timeout, token)
                return _page(issue, "PATCH", url, bug.url)
            # The issue on record was deleted or moved: the report starts a new one.
        payload = {
            "title": _clean(f"{bug.name}: {bug.title}", token),
            "body": body,
            "labels": ["bug", f"priority:{bug.priority.lower()}"],
        }
        created = _call(session, "POST", issues, payload, timeout, token)
        return _page(created, "POST", issues, None)


def deliver(
    bug: Bug, tracker: TrackerSpec, environ: Mapping[str, str], warn: Callable[[str], None]
) -> str | None:
    """File `bug` with the configured tracker: the issue's page, or None (no tracker, or a warning)."""
    if tracker.kind != "github":
        return None
    stays = f"the report stays in {bug.path}" if bug.path else "the report stays in its file"
    token = token_from(environ)
    if token is None:
        warn(f"{bug.name} not sent to GitHub ({tracker.repo}): set GH_TOKEN or GITHUB_TOKEN; {stays}")
        return None
    try:
        return file_issue(bug, tracker, token)
    except TrackerError as exc:
        warn(f"{bug.name} not sent to GitHub ({tracker.repo}): {exc}; {stays}")
        return None


def _call(
    session: requests.Session,
    method: str,
    url: str,
    payload: dict[str, Any],
    timeout: float,
    token: str,
    *,
    missing_ok: bool = False,
) -> dict[str, Any] | None:
    import requests

    try:
        response = session.request(method, url, json=payload, timeout=timeout)
    except requests.Timeout:
        raise TrackerError(f"{method} {url}: no answer within {timeout:g} s") from None
    except requests.RequestException as exc:
        reason = re.search(r"\[Errno -?\d+\] [^'\")]+", str(exc))
        raise TrackerError(
            f"{method} {url}: cannot connect ({reason.group(0) if reason else type(exc).__name__})"
        ) from None
    if missing_ok and response.status_code in (404, 410):
        return None
    if response.status_code not in (200, 201):
        hint = _HINTS.get(response.status_code)
        raise TrackerError(
            _clean(
                f"{method} {url} answered {response.status_code}: {_message(response)}"
                + (f" ({hint})" if hint else ""),
                token,
            )
        )
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise TrackerError(f"{method} {url} answered {response.status_code} without a JSON object")
    return answer


def _message(response: requests.Response) -> str:
    """GitHub's own words: its message, and those of the validation errors (422)."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        text = " ".join(response.text.split())
        return text[:200] or response.reason or "no message"
    words = [str(data.get("message") or response.reason or "no message")]
    for error in data.get("errors") or ():
        if isinstance(error, dict) and error.get("message"):
            words.append(str(error["message"]))
        elif isinstance(error, str):
            words.append(error)
    return "; ".join(words)


def _page(answer: dict[str, Any] | None, method: str, url: str, known: str | None) -> str:
    page = (answer or {}).get("html_url") or known
    if not isinstance(page, str) or not page:
        raise TrackerError(f"{method} {url} answered without the issue's html_url")
    return page


def _clean(text: str, token: str) -> str:
    """Redacted, and without the token even when it has no recognisable shape."""
    text = redact(text)
    return text.replace(token, MASK) if len(token) >= 6 else text
