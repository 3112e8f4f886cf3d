"""Keep secrets out of everything the orchestrator writes: documents, reports, spans and logs."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

SECRET_ENV = (
    "GH_TOKEN",
    "GITHUB_TOKEN",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "CLAUDE_CODE_OAUTH_TOKEN",
)

# Token shapes are caught even when the value never passed through our environment,
# e.g. a token echoed by the container's own logs.
_TOKEN_SHAPES = re.compile(
    r"sk-ant-[A-Za-z0-9_\-]{8,}"
    r"|gh[pousr]_[A-Za-z0-9]{20,}"
    r"|github_pat_[A-Za-z0-9_]{20,}"
)

MASK = "***"

# The password of a URL's user part (`ssh://deploy:secret@host`, a proxy's `http://u:p@proxy`),
# whatever the variable that carried it.
_URL_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s/:@]*:)[^\s/@]+@")

# Shorter values would mask ordinary words ("test", "1") in messages.
_MIN_SECRET_LENGTH = 6


# Secrets seen elsewhere than our own environment, e.g. set only inside the sandbox.
_remembered: set[str] = set()


# Any variable named like a secret, e.g. in a watchdog component's env.
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|CREDENTIAL|PRIVATE", re.IGNORECASE)


def remember(environment: list[str] | None) -> None:
    """Mask from now on the secret values of a `NAME=value` list, such as a container's env."""
    for entry in environment or ():
        name, _, value = entry.partition("=")
        if (name in SECRET_ENV or _SECRET_NAME.search(name)) and len(value.strip()) >= _MIN_SECRET_LENGTH:
            _remembered.add(value.strip())


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """The values of the secret variables in `environ` and those remembered, longest first."""
    environ = os.environ if environ is None else environ
    values = {environ.get(name, "").strip() for name in SECRET_ENV} | _remembered
    return sorted((v for v in values if len(v) >= _MIN_SECRET_LENGTH), key=len, reverse=True)


def redact(text: str, environ: Mapping[str, str] | None = None) -> str:
    """Return `text` with known secret values, token-shaped strings and URL passwords masked."""
    for value in secret_values(environ):
        text = text.replace(value, MASK)
    text = _URL_PASSWORD.sub(rf"\g<1>{MASK}@", text)
    return _TOKEN_SHAPES.sub(MASK, text)
