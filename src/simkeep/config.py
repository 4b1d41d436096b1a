"""Settings, read from the environment with the ``SIMKEEP_`` prefix."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRET = "dev-only-change-me"  # noqa: S105 - a known placeholder, refused in production


class Settings(BaseSettings):
    """Everything an operator configures. Each field is documented in docs/configuration.md."""

    model_config = SettingsConfigDict(env_prefix="SIMKEEP_", env_file=".env", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    database_url: str = Field(default_factory=lambda: f"sqlite:///{Path('var/simkeep.db').resolve()}")
    secret_key: str = PLACEHOLDER_SECRET
    sqlite_busy_timeout_ms: int = 30_000
    db_pool_size: int = 10
    max_request_bytes: int = 1_000_000

    # Policies (DOMAIN.md section 4); all configurable per operator.
    currency: str = "CNY"
    online_replacement_cooldown_days: int = 30
    activation_deadline_days: int = 30
    staff_token_ttl_minutes: int = 8 * 60
    line_token_ttl_minutes: int = 30
    failed_proofs_before_lock: int = 5
    failed_proof_window_minutes: int = 60

    # Identity proofs (issue 3).
    face_accept_below: float = 0.45
    face_reject_above: float = 0.6
    face_min_size_px: int = 80
    face_min_sharpness: float = 40.0
    upload_max_bytes: int = 10_000_000
    upload_max_pixels: int = 40_000_000
    tesseract_cmd: str = "tesseract"
    #: Keys of the evidence vault, "id:base64key,id2:base64key2"; the first encrypts, all decrypt.
    vault_keys: str = ""
    evidence_retention_days: int = 30
    otp_ttl_seconds: int = 300
    otp_max_attempts: int = 5
    otp_sends_per_hour: int = 5
    otp_transport: str = "console"
    otp_outbox_dir: str = "var/outbox"
    #: Overrides of the assurance each action needs, e.g. {"loss.reinstate": "in_person"} (JSON in the env).
    assurance_policy: dict[str, str] = Field(default_factory=dict)
    password_failures_before_lock: int = 5
    password_lock_window_minutes: int = 15

    # The job queue (issue 4).
    job_batch_size: int = Field(default=50, ge=1, le=5000)
    job_lease_seconds: int = Field(default=120, ge=1)
    job_poll_seconds: float = Field(default=1.0, gt=0)
    job_schedule_check_seconds: float = Field(default=15.0, ge=0)

    # Shipping (issue 4).
    shipping_carrier: str = "demo"
    #: Days in transit per region code, overriding the defaults (JSON in the environment).
    shipping_eta_days: dict[str, int] = Field(default_factory=dict)
    #: Shared webhook secrets per carrier (JSON); outside production the demo carrier's is derived.
    shipping_webhook_secrets: dict[str, str] = Field(default_factory=dict)
    demo_carrier_step_minutes: float = Field(default=2.0, ge=0)

    log_json: bool | None = None  # default: JSON in production, console otherwise
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _refuse_placeholder_in_production(self) -> Settings:
        if self.environment == "production" and (
            self.secret_key == PLACEHOLDER_SECRET or len(self.secret_key) < 32
        ):
            msg = "SIMKEEP_SECRET_KEY must be set to a random value of at least 32 characters in production"
            raise ValueError(msg)
        from simkeep.identity.assurance import REQUIRED, Assurance

        for action, level in self.assurance_policy.items():
            if action not in REQUIRED or level.upper() not in Assurance.__members__:
                msg = f"SIMKEEP_ASSURANCE_POLICY: unknown action {action!r} or level {level!r}"
                raise ValueError(msg)
        if self.environment == "production" and not self.vault_keys.strip():
            msg = "SIMKEEP_VAULT_KEYS must hold at least one key (id:base64 of 32 bytes) in production"
            raise ValueError(msg)
        return self

    @property
    def is_sqlite(self) -> bool:
        """Whether the configured database is SQLite."""
        return self.database_url.startswith("sqlite")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
