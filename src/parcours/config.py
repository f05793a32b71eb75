"""Settings, read once from the environment (and an optional TOML file).

Every knob is an environment variable prefixed ``PARCOURS_`` so that a container, a systemd unit
and the test suite configure the instance the same way; ``PARCOURS_CONFIG`` may name a TOML file
whose keys (lower-case, without the prefix) are read first and overridden by the environment.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

DEFAULT_DATA_DIR = Path("var")


@dataclass(frozen=True)
class Settings:
    """The instance configuration; frozen so no request can change it behind another's back."""

    env: str = "production"
    data_dir: Path = DEFAULT_DATA_DIR
    database_url: str = ""
    base_url: str = "http://127.0.0.1:8000"
    # Trusted token issuers: the built-in development IdP is trusted only in development mode.
    # Others are given as "issuer_url" or "issuer_url|jwks_url" separated by spaces.
    oidc_issuers: tuple[str, ...] = ()
    audience: str = "parcours"
    token_ttl_seconds: int = 3600
    # The OpenID provider the portal logs users in with ("" = the development IdP, in
    # development only; FranceConnect / Pro Santé Connect in a deployment).
    portal_issuer: str = ""
    clock_skew_seconds: int = 30
    log_level: str = "INFO"
    # Document bytes: "" = files under data_dir/blobs; "s3://bucket[/prefix]" = S3-compatible
    # storage at s3_endpoint (credentials from PARCOURS_S3_ACCESS_KEY / _SECRET_KEY).
    blob_url: str = ""
    s3_endpoint: str = ""
    s3_access_key: str = ""
    s3_secret_key: str = field(default="", repr=False)
    max_document_bytes: int = 20 * 1024 * 1024
    # Notifications. smtp_url: "" (no e-mail channel), "smtp://host:port" (STARTTLS when the
    # server offers it), "smtps://host:port" (implicit TLS); user and password come from
    # PARCOURS_SMTP_USER / PARCOURS_SMTP_PASSWORD and never reach a log.
    smtp_url: str = ""
    smtp_user: str = ""
    smtp_password: str = field(default="", repr=False)
    smtp_ca_file: str = ""  # CA bundle to trust for the SMTP server's certificate
    notify_sender: str = "notifications@parcours.invalid"
    # "embedded": the service runs the delivery worker and the scheduled jobs in a thread
    # (the default of ``parcours demo``); "off": run ``parcours notify work`` separately.
    worker: str = "off"
    notify_lease_seconds: int = 120
    notify_max_attempts: int = 8
    audit_checkpoint_minutes: int = 15
    # MSSanté operator (``parcours mss serve``; ``parcours demo`` runs two of them). Domains are
    # space-separated; routes "domain=host:port" (the relay port of another operator) replace
    # the MX look-up for the domains they name.
    mss_domains: str = ""
    mss_patient_domains: str = ""
    mss_hostname: str = "localhost"
    mss_host: str = "127.0.0.1"
    mss_cert: str = ""
    mss_key: str = ""
    mss_ca_bundle: str = ""
    mss_liste_blanche: str = ""
    mss_routes: str = ""
    mss_submission_port: int = 587
    mss_submissions_port: int = 465
    mss_relay_port: int = 25
    mss_imap_port: int = 143
    mss_imaps_port: int = 993
    mss_max_message_bytes: int = 10 * 1024 * 1024
    mss_first_retry_seconds: float = 30.0  # outbound relay back-off: doubles up to an hour

    @property
    def is_development(self) -> bool:
        return self.env == "development"

    @property
    def resolved_database_url(self) -> str:
        """SQLite under the data directory unless a URL is configured (the embedded default)."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'parcours.sqlite3').resolve()}"

    @property
    def dev_issuer(self) -> str:
        return self.base_url.rstrip("/") + "/idp"

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"


_FIELDS = {
    "env": str,
    "data_dir": Path,
    "database_url": str,
    "base_url": str,
    "audience": str,
    "token_ttl_seconds": int,
    "portal_issuer": str,
    "clock_skew_seconds": int,
    "log_level": str,
    "blob_url": str,
    "s3_endpoint": str,
    "s3_access_key": str,
    "s3_secret_key": str,
    "max_document_bytes": int,
    "smtp_url": str,
    "smtp_user": str,
    "smtp_password": str,
    "smtp_ca_file": str,
    "notify_sender": str,
    "worker": str,
    "notify_lease_seconds": int,
    "notify_max_attempts": int,
    "audit_checkpoint_minutes": int,
    "mss_domains": str,
    "mss_patient_domains": str,
    "mss_hostname": str,
    "mss_host": str,
    "mss_cert": str,
    "mss_key": str,
    "mss_ca_bundle": str,
    "mss_liste_blanche": str,
    "mss_routes": str,
    "mss_submission_port": int,
    "mss_submissions_port": int,
    "mss_relay_port": int,
    "mss_imap_port": int,
    "mss_imaps_port": int,
    "mss_max_message_bytes": int,
    "mss_first_retry_seconds": float,
}


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Build settings from an optional TOML file then the environment (environment wins)."""
    environ = dict(os.environ if environ is None else environ)
    values: dict[str, object] = {}
    config_file = environ.get("PARCOURS_CONFIG")
    if config_file:
        with open(config_file, "rb") as fh:
            for key, raw in tomllib.load(fh).items():
                values[key.lower()] = raw
    for key in [*_FIELDS, "oidc_issuers"]:
        env_key = "PARCOURS_" + key.upper()
        if env_key in environ:
            values[key] = environ[env_key]
    kwargs: dict[str, object] = {}
    for key, caster in _FIELDS.items():
        if key in values:
            kwargs[key] = caster(values[key])  # type: ignore[operator]
    if "oidc_issuers" in values:
        raw = values["oidc_issuers"]
        items = raw.split() if isinstance(raw, str) else list(raw)  # type: ignore[arg-type]
        kwargs["oidc_issuers"] = tuple(items)
    return Settings(**kwargs)  # type: ignore[arg-type]


_current: Settings | None = None


def get_settings() -> Settings:
    """The process-wide settings, loaded lazily so tests can set the environment first."""
    global _current
    if _current is None:
        _current = load_settings()
    return _current


def set_settings(settings: Settings | None) -> None:
    """Install settings for this process (CLI options, tests); ``None`` reloads from env."""
    global _current
    _current = settings


def with_overrides(settings: Settings, **changes: object) -> Settings:
    return replace(settings, **changes)  # type: ignore[arg-type]
