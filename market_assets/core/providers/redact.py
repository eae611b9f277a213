"""Keep provider secrets out of error text, run metadata and logs.

Secrets live only in environment variables, named in providers.yaml (`api_key_env`,
`secret_key_env`, or any `settings.*_env`). Adapters are written not to repeat them, but a
vendor client can: an HTTP error quoting a URL with `?apikey=...`, a repr of a session with
its headers. The registry therefore passes every error it records or raises through a
`SecretRedactor`, which replaces the current values of those variables with `***` in the
error's message, its notes and every exception it was raised from.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping

MASK = "***"
MIN_SECRET_LENGTH = 4  # shorter values would mask ordinary words; no real key is that short


def secret_env_names(settings: Mapping[str, object]) -> tuple[str, ...]:
    """Names of the environment variables a provider's settings point at for secrets."""
    names = [
        str(value)
        for key, value in settings.items()
        if (key in ("api_key_env", "secret_key_env") or key.endswith("_env")) and value
    ]
    return tuple(dict.fromkeys(names))


class SecretRedactor:
    """Masks the values of named environment variables, read when masking (never stored)."""

    def __init__(self, env_names: Iterable[str] = (), environ: Mapping[str, str] | None = None):
        self.env_names = tuple(dict.fromkeys(env_names))
        self._environ = environ if environ is not None else os.environ

    def _values(self) -> list[str]:
        values = {self._environ.get(name, "") for name in self.env_names}
        # Longest first, so a secret containing another is masked whole.
        return sorted((v for v in values if len(v) >= MIN_SECRET_LENGTH), key=len, reverse=True)

    def text(self, value: str) -> str:
        """`value` with every secret replaced by ***."""
        for secret in self._values():
            value = value.replace(secret, MASK)
        return value

    def record(self, record: Mapping[str, str]) -> dict[str, str]:
        """A copy of a string record (an attempt, a failure map) with secrets masked."""
        return {key: self.text(value) for key, value in record.items()}

    def exception(self, error: BaseException) -> BaseException:
        """Mask secrets in `error`'s arguments, notes and causes, in place; returns `error`.

        Only string arguments are rewritten. An exception whose text still shows a secret
        afterwards (a custom __str__ over other state) is cut from the chain, keeping its
        type name and masked text in a note on the exception that wrapped it.
        """
        secrets = self._values()
        if not secrets:
            return error
        seen: set[int] = set()
        current: BaseException | None = error
        while current is not None and id(current) not in seen:
            seen.add(id(current))
            self._mask_in_place(current)
            for link in ("__cause__", "__context__"):
                linked = getattr(current, link)
                if linked is not None and self._still_leaks(linked):
                    self._mask_in_place(linked)
                    if self._still_leaks(linked):
                        current.add_note(
                            f"[{type(linked).__name__} removed: its text held a secret] "
                            f"{self.text(str(linked))}"
                        )
                        setattr(current, link, None)
            current = current.__cause__ or current.__context__
        return error

    def _mask_in_place(self, error: BaseException) -> None:
        error.args = tuple(self.text(a) if isinstance(a, str) else a for a in error.args)
        for attribute in ("reason", "msg"):
            value = getattr(error, attribute, None)
            if isinstance(value, str):
                with contextlib.suppress(AttributeError):  # read-only on some exceptions
                    setattr(error, attribute, self.text(value))
        notes = getattr(error, "__notes__", None)
        if notes:
            error.__notes__ = [self.text(note) for note in notes]

    def _still_leaks(self, error: BaseException) -> bool:
        try:
            shown = str(error)
        except Exception:  # a broken __str__ shows nothing
            return False
        return any(secret in shown for secret in self._values())
