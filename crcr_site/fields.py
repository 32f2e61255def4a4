"""Model fields shared by the apps."""

from typing import Any

import orjson
from django.db import models

from crcr_site.text import stored_text


def storable_json(value: Any) -> Any:
    """A JSON value as PostgreSQL's jsonb can hold it: NUL (`\\u0000`) and lone surrogates in
    any string or key become U+FFFD. Checked on the compact dump first (orjson, microseconds;
    it refuses lone surrogates), so the common value is returned as it is, unwalked."""
    if value is None or isinstance(value, bool | int | float):
        return value
    try:
        if b"\\u0000" not in orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS):
            return value
    except TypeError:
        pass
    return _cleaned(value)


def _cleaned(value: Any) -> Any:
    if isinstance(value, str):
        return stored_text(value)
    if isinstance(value, dict):
        return {_cleaned(k) if isinstance(k, str) else k: _cleaned(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_cleaned(item) for item in value]
    return value


class StorableJSONField(models.JSONField):
    """A JSONField whose values are stored as `storable_json` makes them: untrusted JSON (a
    callback's body, an echoed upstream payload) may hold what jsonb refuses, and a write
    that fails on it would be refused for ever."""

    def get_prep_value(self, value: Any) -> Any:
        return super().get_prep_value(storable_json(value))
