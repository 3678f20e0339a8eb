"""What the web app lets visitors choose, set by the operator (environment or Streamlit secrets).

Safe by default for a public deployment: visitors only pick options that cannot
make the server read a folder or download from the model hub. The operator can

* ``SER_GENDER_MODEL``: use another gender model (folder or hub id) instead of the
  shipped one, for everyone (``SER_MALE_MODEL_DIR`` / ``SER_FEMALE_MODEL_DIR`` do the
  same for the emotion models);
* ``SER_ALLOW_MODEL_CHOICE=1``: show a "Gender model" choice in the sidebar, limited to
* ``SER_MODEL_ALLOWLIST``: comma-separated hub ids or folders visitors may pick
  (default: the public hub id only). Nothing outside the list can be loaded.

The same keys in lower case (``gender_model``, ``allow_model_choice``,
``model_allowlist`` as a list or a comma-separated string) may be set in
``.streamlit/secrets.toml`` instead; an environment variable wins over a secret.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

from pipeline.cascade import FEMALE_MODEL_DIR, MALE_MODEL_DIR
from pipeline.gender import PUBLIC_HUB_ID

ENV_GENDER_MODEL = "SER_GENDER_MODEL"
ENV_ALLOW_CHOICE = "SER_ALLOW_MODEL_CHOICE"
ENV_ALLOWLIST = "SER_MODEL_ALLOWLIST"
ENV_MALE_DIR = "SER_MALE_MODEL_DIR"
ENV_FEMALE_DIR = "SER_FEMALE_MODEL_DIR"
SHIPPED_LABEL = "Built-in model"


@dataclass(frozen=True)
class AppSettings:
    """The operator's choices.

    Attributes:
        gender_model: the default gender model (folder or hub id); ``None`` = shipped.
        male_dir, female_dir: emotion model folders.
        allow_model_choice: whether visitors may pick a gender model from ``allowlist``.
        allowlist: the hub ids / folders visitors may pick (only used when allowed).
    """

    gender_model: str | None
    male_dir: str
    female_dir: str
    allow_model_choice: bool = False
    allowlist: tuple[str, ...] = ()

    def model_options(self) -> list[str]:
        """What the sidebar offers: the default first, then the allow-list (empty when not allowed)."""
        if not self.allow_model_choice:
            return []
        default = self.gender_model or SHIPPED_LABEL
        return [default, *[m for m in self.allowlist if m != default]]

    def resolve(self, choice: str | None) -> str | None:
        """The gender model to load for a visitor's ``choice``; anything not offered falls back to the default."""
        if choice and choice in self.model_options() and choice != SHIPPED_LABEL:
            return choice
        return self.gender_model


def _truthy(value) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in {"1", "true", "yes", "on"}


def _listed(value) -> tuple[str, ...]:
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    return tuple(dict.fromkeys(s.strip() for s in items if str(s).strip()))


def read_settings(environ: Mapping[str, str] | None = None, secrets: Mapping | None = None) -> AppSettings:
    """:class:`AppSettings` from the environment (first) and Streamlit secrets (second)."""
    env = os.environ if environ is None else environ
    secrets = secrets or {}

    def get(env_key: str, secret_key: str, default=None):
        if env.get(env_key, "").strip():
            return env[env_key].strip()
        value = secrets.get(secret_key)
        return default if value is None or value == "" else value

    allowlist = _listed(get(ENV_ALLOWLIST, "model_allowlist", PUBLIC_HUB_ID))
    return AppSettings(
        gender_model=(str(get(ENV_GENDER_MODEL, "gender_model", "")) or None),
        male_dir=str(get(ENV_MALE_DIR, "male_model_dir", str(MALE_MODEL_DIR))),
        female_dir=str(get(ENV_FEMALE_DIR, "female_model_dir", str(FEMALE_MODEL_DIR))),
        allow_model_choice=_truthy(get(ENV_ALLOW_CHOICE, "allow_model_choice", False)),
        allowlist=allowlist,
    )
