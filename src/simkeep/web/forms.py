"""Reading posted forms: CSRF first, a size limit, and domain errors turned into messages next to fields."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from simkeep.config import Settings
from simkeep.errors import DomainError
from simkeep.web import i18n
from simkeep.web.security import check_csrf

MAX_FIELD_CHARS = 500


@dataclass
class Form:
    """A posted form's text fields (trimmed, limited) and the errors found in it."""

    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> str:
        """A field's value ("" when absent)."""
        return self.values.get(name, "")

    def require(self, language: str, *names: str) -> None:
        """Note every required field left empty."""
        for name in names:
            if not self.get(name):
                self.errors[name] = i18n.translate(language, "form.required")

    @property
    def ok(self) -> bool:
        """No error so far."""
        return not self.errors


async def read_form(request: Request, settings: Settings) -> tuple[Form, FormData]:
    """The posted form, after its CSRF token was checked (raises :class:`CsrfFailed`)."""
    data = await request.form(max_files=4, max_fields=60)
    token = data.get("csrf")
    check_csrf(request, settings, token if isinstance(token, str) else None)
    values = {k: v.strip()[:MAX_FIELD_CHARS] for k, v in data.items() if isinstance(v, str) and k != "csrf"}
    return Form(values), data


def message_for(language: str, error: DomainError, *, prefix: str | None = None) -> str:
    """What to tell a person about a refusal: the area's own text for the code (``prefix``: ``pcode.`` for
    the portal, ``ccode.`` for the console), else the shared one, else the error's own message."""
    for key in ([f"{prefix}{error.code}"] if prefix else []) + [f"code.{error.code}"]:
        text = i18n.translate(language, key)
        if text != key:
            return text
    return error.message


def field_for(error: DomainError) -> str:
    """The form field a refusal is about ("_form" when it concerns the whole form)."""
    return str(error.details.get("field", "_form"))


def keep_or_discard(session: Session, error: DomainError) -> None:
    """After a refusal: commit what the refusal itself records (a failed proof), else roll back."""
    if error.keep_changes:
        session.commit()
    else:
        session.rollback()
