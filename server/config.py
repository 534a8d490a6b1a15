"""Process configuration, read once from environment variables.

Every variable is documented in the README's configuration table; keep the two in step.
Business parameters (caps, rates, limits) are not here: they live in `system_settings`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


class ConfigError(ValueError):
    """A setting has a value the server cannot run with; the message says which and why."""


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def _env_int(name: str, default: int) -> int:
    raw = _env(name)
    return int(raw) if raw else default


def _env_float(name: str, default: float) -> float:
    raw = _env(name)
    return float(raw) if raw else default


def cpu_count() -> int:
    """Cores this process may run on (its CPU affinity where the platform reports it)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def _env_positive(name: str, default: int) -> int:
    raw = _env(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{name} must be a whole number >= 1, not {raw!r}")
    return value


def _env_non_negative(name: str, default: float) -> float:
    raw = _env(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also refuses NaN
        raise ConfigError(f"{name} must be a number of seconds >= 0, not {raw!r}")
    return value


def _env_workers(name: str) -> int:
    raw = _env(name)
    if not raw:
        return 1
    try:
        count = int(raw)
    except ValueError:
        count = -1
    if count < 0:
        raise ConfigError(
            f"{name} must be a whole number >= 0 (0 = one per CPU core, 1 = a single"
            f" process), not {raw!r}"
        )
    return count or cpu_count()


def _env_bool(name: str, default: bool) -> bool:
    raw = _env(name).lower()
    if not raw:
        return default
    return raw in {"1", "true", "yes", "on"}


@dataclass(frozen=True, slots=True)
class Settings:
    # Network
    grpc_addr: str = "0.0.0.0:50051"
    metrics_addr: str = ""  # "host:port" for the Prometheus exporter; empty disables it
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_client_ca_file: str = ""  # set to require mutual TLS
    max_concurrent_rpcs: int = 1000
    max_message_bytes: int = 8 * 1024 * 1024
    max_connection_age_s: int = 300
    max_connection_age_grace_s: int = 30  # in-flight calls get this long after max age
    keepalive_time_s: int = 30  # server pings an idle connection this often
    keepalive_timeout_s: int = 10  # and closes it when the ping is not answered in time
    shutdown_grace_s: float = 15.0

    # Database
    database_url: str = ""  # empty: start an embedded PostgreSQL under data_dir
    data_dir: Path = field(default_factory=lambda: Path(".data"))
    db_pool_size: int = 20
    db_max_overflow: int = 10
    db_statement_cache: bool = True  # turn off behind PgBouncer in transaction mode
    # Group commit of hot writes (server/batching.py): calls per transaction, and
    # transactions in the database at once, per use case.
    batch_max_size: int = 64
    batch_max_inflight: int = 1
    # Business settings are cached per process this long (OpsService.UpdateSetting refreshes
    # the answering process at once, every other within this).
    settings_ttl_s: float = 30.0

    # Auth (JWT bearer tokens)
    jwt_public_key_file: str = ""  # PEM public key (ES256/RS256)
    jwt_jwks_file: str = ""  # JWKS JSON file; keys picked by `kid`
    jwt_dev_secret: str = ""  # HS256 secret, local development only
    jwt_dev_private_key_file: str = ""  # PEM private key `smartstart token` signs with (dev)
    jwt_issuer: str = ""
    jwt_audience: str = ""
    jwt_leeway_s: int = 30

    # Rate limits (per replica, per principal or peer)
    rate_limit_anonymous: int = 100
    rate_limit_authenticated: int = 1000
    rate_limit_window_s: int = 900

    # Secrets and storage
    secret_key: str = ""  # signs page tokens; empty derives a per-process key (dev only)
    blob_dir: Path = field(default_factory=lambda: Path(".data/blobs"))
    blob_encryption_key: str = ""  # base64 32-byte AES-GCM key; empty stores plaintext
    signing_key_file: str = ""  # PEM ECDSA P-256 private key for checkpoints and certificates

    # Process
    event_loop: str = "uvloop"  # "uvloop" (libuv, faster I/O) or "asyncio" (the stdlib loop)
    workers: int = 1  # server processes sharing grpc_addr (server/workers.py); 0 in env = cores
    # Not from the environment: set by `smartstart serve-worker` in each child of the supervisor.
    worker_index: int | None = None

    # Jobs and logging
    jobs_enabled: bool = True
    log_level: str = "info"
    log_json: bool = True

    @property
    def embedded_db(self) -> bool:
        return not self.database_url


def load_settings() -> Settings:
    data_dir = Path(_env("SMARTSTART_DATA_DIR", ".data"))
    return Settings(
        grpc_addr=_env("SMARTSTART_GRPC_ADDR", "0.0.0.0:50051"),
        metrics_addr=_env("SMARTSTART_METRICS_ADDR"),
        tls_cert_file=_env("SMARTSTART_TLS_CERT_FILE"),
        tls_key_file=_env("SMARTSTART_TLS_KEY_FILE"),
        tls_client_ca_file=_env("SMARTSTART_TLS_CLIENT_CA_FILE"),
        max_concurrent_rpcs=_env_int("SMARTSTART_MAX_CONCURRENT_RPCS", 1000),
        max_message_bytes=_env_int("SMARTSTART_MAX_MESSAGE_BYTES", 8 * 1024 * 1024),
        max_connection_age_s=_env_int("SMARTSTART_MAX_CONNECTION_AGE_S", 300),
        max_connection_age_grace_s=_env_int("SMARTSTART_MAX_CONNECTION_AGE_GRACE_S", 30),
        keepalive_time_s=_env_int("SMARTSTART_KEEPALIVE_TIME_S", 30),
        keepalive_timeout_s=_env_int("SMARTSTART_KEEPALIVE_TIMEOUT_S", 10),
        shutdown_grace_s=_env_float("SMARTSTART_SHUTDOWN_GRACE_S", 15.0),
        database_url=_env("DATABASE_URL"),
        data_dir=data_dir,
        db_pool_size=_env_int("SMARTSTART_DB_POOL_SIZE", 20),
        db_max_overflow=_env_int("SMARTSTART_DB_MAX_OVERFLOW", 10),
        db_statement_cache=_env_bool("SMARTSTART_DB_STATEMENT_CACHE", True),
        batch_max_size=_env_positive("SMARTSTART_BATCH_MAX_SIZE", 64),
        batch_max_inflight=_env_positive("SMARTSTART_BATCH_MAX_INFLIGHT", 1),
        settings_ttl_s=_env_non_negative("SMARTSTART_SETTINGS_TTL_S", 30.0),
        jwt_public_key_file=_env("SMARTSTART_JWT_PUBLIC_KEY_FILE"),
        jwt_jwks_file=_env("SMARTSTART_JWT_JWKS_FILE"),
        jwt_dev_secret=_env("SMARTSTART_JWT_DEV_SECRET"),
        jwt_dev_private_key_file=_env("SMARTSTART_JWT_DEV_PRIVATE_KEY_FILE"),
        jwt_issuer=_env("SMARTSTART_JWT_ISSUER"),
        jwt_audience=_env("SMARTSTART_JWT_AUDIENCE"),
        jwt_leeway_s=_env_int("SMARTSTART_JWT_LEEWAY_S", 30),
        rate_limit_anonymous=_env_int("SMARTSTART_RATE_LIMIT_ANONYMOUS", 100),
        rate_limit_authenticated=_env_int("SMARTSTART_RATE_LIMIT_AUTHENTICATED", 1000),
        rate_limit_window_s=_env_int("SMARTSTART_RATE_LIMIT_WINDOW_S", 900),
        secret_key=_env("SMARTSTART_SECRET_KEY"),
        blob_dir=Path(_env("SMARTSTART_BLOB_DIR", str(data_dir / "blobs"))),
        blob_encryption_key=_env("SMARTSTART_BLOB_ENCRYPTION_KEY"),
        signing_key_file=_env("SMARTSTART_SIGNING_KEY_FILE"),
        event_loop=_env("SMARTSTART_EVENT_LOOP", "uvloop").lower(),
        workers=_env_workers("SMARTSTART_WORKERS"),
        jobs_enabled=_env_bool("SMARTSTART_JOBS_ENABLED", True),
        log_level=_env("SMARTSTART_LOG_LEVEL", "info"),
        log_json=_env_bool("SMARTSTART_LOG_JSON", True),
    )
