"""Typed options of a task: one pydantic model per task, from which everything else is derived.

A task's :class:`TaskOptions` subclass declares its form fields once (type, default, bounds, a
description for people and, where a field needs parsing, a ``mode="before"`` validator whose
``ValueError`` message is the one users read). From it come:

- the handler's :meth:`~app.tasks.handler.TaskHandler.parse_options` (API v1 form fields, v2
  ``parameters``, the refine route): :meth:`TaskOptions.parse`;
- the OpenAPI form fields of the task's route: :meth:`TaskOptions.openapi_fields`;
- the pages' forms: :class:`Checked` validates a WTForms field with the model's rule and message,
  and :func:`form_options` turns a form's fields into the hooks' options through the model.

A refused field ``x`` answers the API error ``invalid_x`` (400): registered with the task
(:func:`app.errors.register_codes`) unless :class:`app.errors.ErrorCode` has it. Blank form
values mean the default.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, ValidationError
from wtforms.validators import ValidationError as FieldError

from ..errors import ApiError


def integer_in(value, low: int, high: int, name: str) -> int:
    """``value`` (a form string or a number) as an int in ``low..high``; raises ValueError
    "<name> must be an integer between <low> and <high>" (for a ``mode="before"`` validator)."""
    try:
        number = int(str(value).strip())
    except ValueError:
        number = low - 1
    if not low <= number <= high:
        raise ValueError(f"{name} must be an integer between {low} and {high}")
    return number


def choice_of(value, choices: tuple[str, ...], message: str) -> str:
    """``value`` stripped and lower-cased when it is one of ``choices``; else ValueError(``message``)."""
    text = str(value).strip().lower()
    if text not in choices:
        raise ValueError(message)
    return text


class OptionError(ApiError):
    """A refused option: ``field`` is its form field name, ``code`` ``invalid_<field>``."""

    def __init__(self, field: str, message: str):
        super().__init__(f"invalid_{field}", message)
        self.field = field


class TaskOptions(BaseModel):
    """Base of the per-task option models (no options). Field aliases are the form field names
    (salt's ``slice`` is the hooks' ``spec``)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True, arbitrary_types_allowed=True)

    @classmethod
    def parse(cls, form: Mapping[str, Any]) -> Self:
        """The options of a request's form fields (a MultiDict, a dict); blank values are the
        defaults. Raises :class:`OptionError` (``invalid_<field>``, 400) naming the first bad field."""
        names = [field.alias or name for name, field in cls.model_fields.items()]
        values = {name: form.get(name) for name in names
                  if form.get(name) is not None and str(form.get(name)).strip() != ""}
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = str(first["loc"][0]) if first["loc"] else "options"
            error = (first.get("ctx") or {}).get("error")
            raise OptionError(field, str(error) if error is not None else f"{field}: {first['msg']}") from None

    def hooks(self) -> dict[str, Any]:
        """Keyword arguments of the handler's hooks (field names, parsed values)."""
        return dict(self)

    @classmethod
    def openapi_fields(cls) -> dict[str, dict]:
        """Form field name -> JSON schema (type, bounds, enum, default, description) for OpenAPI."""
        schema = cls.model_json_schema(by_alias=True, mode="validation")
        return {name: {k: v for k, v in prop.items() if k != "title" and not (k == "default" and v is None)}
                for name, prop in schema.get("properties", {}).items()}

    @classmethod
    def error_table(cls) -> dict[str, tuple[int, str]]:
        """``invalid_<field>`` -> (400, meaning) of each field, for the app's error table."""
        return {f"invalid_{field.alias or name}": (400, f"`{field.alias or name}` refused: {field.description or name}")
                for name, field in cls.model_fields.items()}

    @classmethod
    def error_codes(cls) -> tuple[str, ...]:
        """The API error codes a refused field answers (``invalid_<field>``)."""
        return tuple(f"invalid_{field.alias or name}" for name, field in cls.model_fields.items())


def form_options(options: type[TaskOptions], form, **fixed) -> dict[str, Any] | None:
    """A page's options: the WTForms ``form``'s fields named like the model's (``fixed`` values
    win), parsed by ``options``; a refusal is put under its form field (or the form's first
    field) and None returned."""
    values = {name: field.data for name, field in form._fields.items()}
    try:
        return options.parse({**values, **fixed}).hooks()
    except OptionError as exc:
        target = form._fields.get(exc.field) or next(iter(form._fields.values()))
        target.errors = [*target.errors, exc.message]
        return None


class Checked:
    """A WTForms validator: the field's value parsed by ``options`` (a :class:`TaskOptions` model),
    so a page refuses what the API refuses, with the same message."""

    def __init__(self, options: type[TaskOptions]):
        self.options = options

    def __call__(self, form, field) -> None:
        try:
            self.options.parse({field.name: field.data})
        except OptionError as exc:
            raise FieldError(exc.message) from None
