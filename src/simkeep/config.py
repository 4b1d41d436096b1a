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
    db_pool_size: int = Field(default=10, ge=1, le=1000)
    #: Threads per `simkeep serve` worker process that run requests' synchronous work (anyio's default
    #: thread limiter). Python runs one thread at a time, so threads only overlap waits; under load more
    #: of them spend the CPU handing the interpreter lock around (docs/configuration.md).
    request_threads: int = Field(default=40, ge=1, le=200)
    #: Requests of a `simkeep serve` worker that hold a database session at once; the others wait their
    #: turn on the event loop. Unset: the pool's connections less four (26 with the default pool). Never
    #: more than that (docs/configuration.md).
    request_sessions: int | None = Field(default=None, ge=1, le=3000)
    max_request_bytes: int = 1_000_000
    #: How long `simkeep serve` keeps an idle HTTP keep-alive connection open (behind a load balancer, set
    #: it above the balancer's own idle timeout, so the server never closes a connection the balancer
    #: reuses).
    http_keepalive_seconds: int = Field(default=5, ge=1, le=3600)

    # Policies (DOMAIN.md section 4); all configurable per operator.
    currency: str = "CNY"
    online_replacement_cooldown_days: int = 30
    activation_deadline_days: int = 30
    staff_token_ttl_minutes: int = 8 * 60
    line_token_ttl_minutes: int = 30
    failed_proofs_before_lock: int = 5
    failed_proof_window_minutes: int = 60

    #: Days without chargeable activity before a number is recycled (per-plan policies: the keep-alive issue).
    inactivity_days_before_recycling: int = Field(default=180, ge=1)

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

    # Notification transports (issue 4).
    #: How e-mail and SMS leave simkeep; unset, a channel uses SIMKEEP_OTP_TRANSPORT (console, file or null).
    email_transport: Literal["console", "file", "smtp", "null"] | None = None
    sms_transport: Literal["console", "file", "smpp", "null"] | None = None
    smtp_host: str = "localhost"
    smtp_port: int = Field(default=587, ge=1, le=65535)
    #: "starttls" (refused when the server cannot), "implicit" (TLS from the first byte, port 465) or "off".
    smtp_tls: Literal["starttls", "implicit", "off"] = "starttls"
    smtp_username: str = ""
    smtp_password: str = Field(default="", repr=False)
    #: The From header, e.g. "运营商 <noreply@example.cn>"; its address is also the envelope sender.
    smtp_from: str = "simkeep <noreply@localhost>"
    #: The right-hand side of Message-IDs; empty: the domain of SIMKEEP_SMTP_FROM.
    smtp_message_id_domain: str = ""
    smtp_timeout_seconds: float = Field(default=30.0, gt=0)
    #: CA certificates (PEM) that verify the server, e.g. a private CA; empty: the system's.
    smtp_ca_file: str = ""
    smpp_host: str = "localhost"
    smpp_port: int = Field(default=2775, ge=1, le=65535)
    smpp_system_id: str = Field(default="", max_length=15)
    smpp_password: str = Field(default="", repr=False, max_length=8)
    smpp_system_type: str = Field(default="", max_length=12)
    #: The sender shown on handsets (a service number or an alphanumeric name) and its TON and NPI.
    smpp_source_addr: str = Field(default="", max_length=20)
    smpp_source_addr_ton: int = Field(default=0, ge=0, le=6)
    smpp_source_addr_npi: int = Field(default=0, ge=0, le=18)
    #: TON and NPI of destinations (E.164 numbers, sent without the "+": international, ISDN).
    smpp_dest_addr_ton: int = Field(default=1, ge=0, le=6)
    smpp_dest_addr_npi: int = Field(default=1, ge=0, le=18)
    smpp_timeout_seconds: float = Field(default=10.0, gt=0)
    #: How often the receipt listener checks an idle link with enquire_link.
    smpp_enquire_link_seconds: float = Field(default=30.0, gt=0)

    # CAMARA (issues 6 and 7).
    #: Lifetime of the access tokens that POST /oauth2/token hands to relying parties.
    camara_token_ttl_seconds: int = Field(default=600, ge=30, le=3600)
    #: How long a worker trusts what it read of a client (active, limits, secret rotation) before rereading.
    camara_client_cache_seconds: float = Field(default=5.0, ge=0)
    #: How often the background thread writes the buffered CAMARA queries to the query log. Often and small:
    #: a flush holds the interpreter lock (and the database's cores) for a moment in proportion to the
    #: queries it writes, and under load a second's worth stalled the answers in flight (bench/camara_check).
    camara_query_flush_seconds: float = Field(default=0.1, gt=0)
    #: Queries held in memory at most; beyond it the oldest unwritten ones are dropped (and logged).
    camara_query_buffer_max: int = Field(default=200_000, ge=1)
    #: Each API worker answers SIM Swap queries from its own copy of every line's facts, refreshed from the
    #: database's change feed (simkeep.camara.facts); off, every check reads the database.
    camara_facts_cache: bool = True
    #: Lines a worker copies at most (each costs about 100 bytes per worker); with more, checks read the
    #: database.
    camara_facts_cache_max_lines: int = Field(default=5_000_000, ge=0)
    #: How often each worker reads the change feed (a SIM change reaches every worker within this, plus the
    #: time to read it; the freshness promise is one second).
    camara_facts_poll_seconds: float = Field(default=0.25, gt=0, le=0.5)
    #: Days of SIM-change history the SIM Swap API may disclose (retrieve-date answers null beyond it).
    camara_sim_swap_monitored_days: int = Field(default=100, ge=1, le=3650)
    #: Subscriptions (sim-swap-subscriptions 0.3): allow event sinks over plain http to loopback addresses
    #: (tests, demos). Production refuses http, and private, loopback or reserved addresses, whatever is set.
    camara_sink_allow_http: bool = False
    #: The CloudEvents ``source`` of the events simkeep sends.
    camara_event_source: str = Field(
        default="urn:simkeep:sim-swap-subscriptions", min_length=1, max_length=200
    )
    #: PEM file of the certificate authorities trusted for https sinks (a bank's private CA); unset: the
    #: usual public authorities (certifi's bundle).
    camara_sink_ca_file: str | None = None
    #: PEM certificate (and its key, unless in the same file) simkeep presents to sinks that ask for mutual
    #: TLS; unset: no client certificate.
    camara_sink_client_cert_file: str | None = None
    camara_sink_client_key_file: str | None = None
    #: Timeout of one delivery to a sink; a failed delivery is retried by the job queue with backoff.
    camara_sink_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    #: Active subscriptions one client may hold at once.
    camara_max_subscriptions_per_client: int = Field(default=10_000, ge=1)

    # Shipping (issue 4).
    shipping_carrier: str = "demo"
    #: Days in transit per region code, overriding the defaults (JSON in the environment).
    shipping_eta_days: dict[str, int] = Field(default_factory=dict)
    #: Shared webhook secrets per carrier (JSON); outside production the demo carrier's is derived.
    shipping_webhook_secrets: dict[str, str] = Field(default_factory=dict)
    demo_carrier_step_minutes: float = Field(default=2.0, ge=0)

    # The HLR (issue 8): simkeep's own table, or a running osmo-hlr over CTRL and VTY (docs/network.md).
    network_adapter: Literal["embedded", "osmo-hlr"] = "embedded"
    hlr_host: str = "127.0.0.1"
    hlr_ctrl_port: int = Field(default=4259, ge=1, le=65535)
    hlr_vty_port: int = Field(default=4258, ge=1, le=65535)
    #: Connect and read timeout of one HLR exchange; beyond it a step fails as NETWORK_UNAVAILABLE (retried).
    hlr_timeout_s: float = Field(default=2.0, gt=0)
    #: Days a replaced SIM's subscriber stays barred in the HLR before it is removed.
    hlr_old_sim_grace_days: int = Field(default=7, ge=0)

    # eSIM over ES2+ to an SM-DP+ (issue 8; docs/esim.md).
    #: Base URL of the SM-DP+'s ES2+ interface (https://smdp.example.net); empty: no eSIM channel.
    esim_smdp_url: str = ""
    #: Our functionRequesterIdentifier, as agreed with the SM-DP+ operator.
    esim_requester_id: str = "simkeep"
    #: Connect and read timeout of one ES2+ call; beyond it the call is retried by the job queue.
    esim_timeout_s: float = Field(default=10.0, gt=0, le=120)
    #: The bearer token the SM-DP+ presents on handleDownloadProgressInfo; empty: every callback is refused.
    esim_callback_token: str = Field(default="", repr=False)
    #: When the number moves to the eSIM: once the SM-DP+ reports the profile installed, or when the holder
    #: confirms on the portal (possible from the profile's release on).
    esim_activate_on: Literal["installed", "holder"] = "installed"
    #: The profile type asked for in downloadOrder (empty: the SM-DP+ takes the ICCID's own).
    esim_profile_type: str = ""
    #: CA certificates (PEM) that verify the SM-DP+ (empty: the system's); no verify: test doubles only.
    esim_ca_file: str = ""
    esim_tls_verify: bool = True
    #: Client certificate and key (PEM) for mutual TLS to the SM-DP+; empty: none.
    esim_client_cert: str = ""
    esim_client_key: str = ""

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
        if self.environment == "production":
            from simkeep.identity.vault import check_settings

            check_settings(self)  # placeholder or malformed keys stop production from starting
        return self

    @property
    def is_sqlite(self) -> bool:
        """Whether the configured database is SQLite."""
        return self.database_url.startswith("sqlite")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
