"""Typed, frozen service configuration built once from the environment."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from email.utils import parseaddr
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers

from infra.crypto import DataKeyError, FieldCipher
from infra.files import make_private_dirs, tighten
from infra.sealed import RecordingCipher, RecordingKeyError, new_recording_key, parse_keys

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_FLOW_FILE = ROOT / "ivr_flows" / "hotline.yaml"
# Callback SLAs, working hours, reminder periods, channels and LINE groups; and the public holidays.
# Both are data the operator maintains; see README "Callbacks and reminders".
DEFAULT_CALLBACKS_FILE = ROOT / "cases" / "data" / "callbacks.yaml"
DEFAULT_HOLIDAYS_FILE = ROOT / "cases" / "data" / "holidays-th.yaml"
DEFAULT_RETENTION_FILE = ROOT / "cases" / "data" / "retention.yaml"
HOTLINE_NUMBER = "+6621266565"  # 02 126 6565
# A syntactically valid SID for a machine with no Twilio account; the simulator uses the same one.
DEV_ACCOUNT_SID = "AC" + "0" * 32
LOCAL_SECRETS_FILE = "local-secrets.json"
ENGINE_PREFIX = "HOTLINE_ENGINE_"


ProxyNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ConfigError(ValueError):
    """A configuration value is missing or wrong; the message names the variable (and file and field).

    Entry points (the app factory under `flask` and gunicorn, the worker) print it as one line and exit 2.
    """


# A value that holds one came from a file with CRLF line ends or a pasted line break: never meant.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ENVIRONMENTS = ("development", "production")
# Twilio's <Say> voices: Amazon Polly and Google voices by name, or the classic ones (English only).
_VOICE = re.compile(r"(Polly|Google)\.[A-Za-z0-9_-]+")
_CLASSIC_VOICES = ("man", "woman", "alice")
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]")


class _Environment(dict[str, str]):
    """The environment as read: a value holding a control character is refused when it is read."""

    def get(self, name: str, default: Any = None) -> Any:
        value = super().get(name, default)
        if isinstance(value, str) and _CONTROL.search(value):
            # Never the value itself: it may be a secret.
            raise ConfigError(f"{name} holds a control character (a line break or a CRLF file's \\r?)")
        return value


@dataclass(frozen=True)
class Config:
    """Everything the service reads from its environment, validated."""

    instance_dir: Path
    data_dir: Path
    database_url: str
    public_base_url: str
    twilio_account_sid: str
    twilio_auth_token: str = field(repr=False)
    twilio_api_base: str
    timezone_name: str
    secret_key: str = field(repr=False)
    data_key: str = field(repr=False)
    # HOTLINE_RECORDING_KEY: AES-256-GCM key(s) sealing recordings at rest (infra.sealed), apart from
    # the numbers' key; one, or several comma-separated while rotating (the first seals).
    recording_key: str = field(default="", repr=False)
    flow_file: Path = DEFAULT_FLOW_FILE
    transfer_number: str | None = None
    voice_th: str = "Google.th-TH-Standard-A"
    voice_en: str = "Google.en-US-Standard-C"
    delete_after_download: bool = False
    # LANG=/model/folder,… as written; transcription.registry.parse_model_spec reads it (one parser
    # for the worker and the `transcribe` command).
    vosk_models_spec: str = ""
    # The same for Whisper (CTranslate2) model folders: HOTLINE_WHISPER_MODELS=th=/srv/models/whisper-large.
    whisper_models_spec: str = ""
    # HOTLINE_ENGINE_<LANG>=whisper|vosk for a language with both (engine_choices below reads them).
    engine_choices: Mapping[str, str] = field(default_factory=dict)
    # Threads each transcriber's Whisper engine may use (HOTLINE_WHISPER_THREADS).
    whisper_threads: int = 1
    # HOTLINE_TRANSCRIBERS: jobs transcribed at once. A Whisper-only pool runs up to
    # HOTLINE_WHISPER_JOBS_PER_PROCESS of them in each process, on one copy of the model's weights.
    transcriber_processes: int = 2
    whisper_jobs_per_process: int = 1
    transcribe_timeout_s: float = 300.0
    max_audio_s: float = 900.0
    transcriber_max_jobs: int = 100
    sweep_interval_s: float = 2.0
    # All the database work of one Twilio webhook, in seconds; past it the caller is answered without the
    # database (rescue prompt, message spooled). Twilio itself gives up after 15 s.
    webhook_db_budget_s: float = 4.0
    # How often the worker asks Twilio's REST API for recordings and call ends we never heard of.
    twilio_reconcile_s: float = 60.0
    download_attempts: int = 6
    download_backoff_s: float = 30.0
    # Staff console sessions: ended after this long without a request, and this long after sign-in.
    session_idle_minutes: int = 30
    session_max_hours: int = 12
    # HOTLINE_TRUSTED_PROXIES: how many proxies stand in front of the app, or their addresses/networks;
    # 0 trusts no X-Forwarded-* header (console.proxies wires it).
    trusted_proxies: int | tuple[ProxyNetwork, ...] = 0
    callbacks_file: Path = DEFAULT_CALLBACKS_FILE
    holidays_file: Path = DEFAULT_HOLIDAYS_FILE
    # How long each kind of personal data is kept (cases.retention).
    retention_file: Path = DEFAULT_RETENTION_FILE
    # The hotline's own number: the caller ID reporters see when staff call them back.
    hotline_number: str = HOTLINE_NUMBER
    # SMS through Twilio's Messages API: an SMS-capable number or a Messaging Service SID (MG…);
    # SMS reminders are off while it is unset.
    sms_from: str | None = None
    # Staff phones: the country calling codes allowed (HOTLINE_STAFF_PHONE_COUNTRIES, Thailand only by
    # default), and the call-back bridge's limits per user and per case in an hour.
    staff_phone_countries: frozenset[int] = frozenset({66})
    bridge_calls_per_user_hour: int = 5
    bridge_calls_per_case_hour: int = 3
    # HOTLINE_ROUTE_WITHOUT_OPERATOR: routing a case to an office without an SC-Operator is refused with
    # the nearest office above offered ("offer"), or goes to that office with a warning ("parent").
    route_without_operator: str = "offer"
    # HOTLINE_CONSOLE_DIGITS: the console writes numbers, dates and references in Arabic or Thai digits.
    console_digits: str = "arabic"
    # E-mail: an SMTP relay; e-mail reminders are off while smtp_host is unset.
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_user: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    smtp_starttls: bool = False
    mail_from: str = "safety-center@localhost"
    line_api_base: str = "https://api.line.me"
    notify_attempts: int = 5
    notify_backoff_s: float = 30.0
    production: bool = False
    # True when the Twilio token came from the local secrets file, not from the environment.
    dev_credentials: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def timezone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone_name)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def recordings_dir(self) -> Path:
        return self.data_dir / "recordings"

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    # The keys are parsed once per Config (from_env's check hands in what it built): the app, its start's
    # key check, the worker and the commands all use these two objects.
    @cached_property
    def cipher(self) -> FieldCipher:
        """The numbers' cipher (HOTLINE_DATA_KEY)."""
        return FieldCipher(self.data_key)

    @cached_property
    def sealer(self) -> RecordingCipher:
        """The recordings' cipher (HOTLINE_RECORDING_KEY)."""
        return RecordingCipher(self.recording_key)

    def with_overrides(self, **changes: Any) -> Config:
        return replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Config:
        """Build the configuration from environment variables (see README), then apply overrides."""
        env = _Environment(os.environ if environ is None else environ)
        env.update({k: str(v) for k, v in overrides.pop("env", {}).items()})
        production = _flag(env, "HOTLINE_ENV_PRODUCTION", _environment(env) == "production")

        instance_dir = _folder("HOTLINE_INSTANCE_DIR", Path(env.get("HOTLINE_INSTANCE_DIR", "instance")))
        data_dir = _folder("HOTLINE_DATA_DIR", data_dir_from_env(env))
        local = _secrets_source(env, production, instance_dir)
        data_key, cipher = _data_key(env.get("HOTLINE_DATA_KEY"), local, instance_dir)
        recording_key, sealer = _recording_key(env.get("HOTLINE_RECORDING_KEY"), local, instance_dir)
        config = cls(
            instance_dir=instance_dir,
            data_dir=data_dir,
            database_url=_database_url(env, instance_dir),
            timezone_name=_timezone(env),
            secret_key=env.get("HOTLINE_SECRET_KEY") or local.get("secret_key", ""),
            data_key=data_key,
            recording_key=recording_key,
            production=production,
            **_telephony_settings(env, local, production),
            **_worker_settings(env),
            **_staff_settings(env),
        )
        if overrides:
            return replace(config, **overrides)  # a new Config: its ciphers are built from its own keys
        # The checks' ciphers become the Config's (cached_property reads the instance's __dict__ first).
        if cipher is not None:
            config.__dict__["cipher"] = cipher
        if sealer is not None:
            config.__dict__["sealer"] = sealer
        return config


_PRODUCTION_NEEDS = (
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "PUBLIC_BASE_URL",
    "DATABASE_URL",
    "HOTLINE_SECRET_KEY",
    "HOTLINE_DATA_KEY",
    "HOTLINE_RECORDING_KEY",
)


def _secrets_source(env: Mapping[str, str], production: bool, instance_dir: Path) -> dict[str, str]:
    """Production takes every secret from the environment; elsewhere the instance keeps generated ones."""
    missing = [name for name in _PRODUCTION_NEEDS if not env.get(name)]
    if production and missing:
        raise ConfigError("HOTLINE_ENV=production needs these variables set: " + ", ".join(missing))
    return {} if production else _local_secrets(instance_dir)


def _environment(env: Mapping[str, str]) -> str:
    name = env.get("HOTLINE_ENV") or "development"
    if name not in _ENVIRONMENTS:
        raise ConfigError(f"HOTLINE_ENV={name!r} is not one of {', '.join(_ENVIRONMENTS)}")
    return name


def _folder(name: str, path: Path) -> Path:
    """The folder a variable names (made later, 0700); a file in its place stops the start here."""
    path = path.resolve()
    for level in (path, *path.parents):
        if level.exists():
            if not level.is_dir():
                raise ConfigError(f"{name}={str(path)!r}: {level} is a file, not a folder")
            break
    return path


def private_folder(name: str, path: Path) -> None:
    """Make the folder `name` points at, and its missing parents, 0700; refuse the start if we cannot."""
    try:
        make_private_dirs(path)
        tighten(path)  # an older run may have made it 0755
    except OSError as exc:
        raise ConfigError(
            f"{name}={str(path)!r} cannot be made a private folder: {exc.strerror or exc}"
        ) from exc


def _data_key(
    value: str | None, local: Mapping[str, str], instance_dir: Path
) -> tuple[str, FieldCipher | None]:
    """HOTLINE_DATA_KEY, else the generated one; either must be a Fernet key. With its cipher (None: none)."""
    key = value or local.get("data_key", "")
    if not key:
        return key, None  # only production has no local key, and it refuses the start before this
    try:
        return key, FieldCipher(key)
    except DataKeyError as exc:
        if value:
            raise ConfigError(str(exc)) from exc
        where = f"{instance_dir / LOCAL_SECRETS_FILE}: data_key"
        raise ConfigError(f"{where} is not a Fernet key (32 url-safe base64 bytes)") from exc


def _recording_key(
    value: str | None, local: Mapping[str, str], instance_dir: Path
) -> tuple[str, RecordingCipher | None]:
    """HOTLINE_RECORDING_KEY, else the generated one: 32-byte AES keys, url-safe base64, comma-separated.
    With its cipher (None: no key)."""
    key = value or local.get("recording_key", "")
    if not key:
        return key, None  # only production has no local key, and it refuses the start before this
    try:
        return key, RecordingCipher(key)
    except RecordingKeyError:
        where = "HOTLINE_RECORDING_KEY" if value else f"{instance_dir / LOCAL_SECRETS_FILE}: recording_key"
        try:
            parse_keys(key, where)  # the same fault again, named where the key came from
        except RecordingKeyError as exc:
            raise ConfigError(str(exc)) from exc
        raise


def _timezone(env: Mapping[str, str]) -> str:
    tz_name = env.get("HOTLINE_TIMEZONE", "Asia/Bangkok")
    try:
        ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"HOTLINE_TIMEZONE={tz_name!r} is not an IANA time zone") from exc
    return tz_name


def _database_url(env: Mapping[str, str], instance_dir: Path) -> str:
    database_url = env.get("DATABASE_URL") or f"sqlite:///{instance_dir / 'hotline.db'}"
    scheme = database_url.split(":", 1)[0].split("+", 1)[0]
    if scheme not in ("sqlite", "postgresql"):
        raise ConfigError(f"DATABASE_URL must be sqlite:/// or postgresql://, got scheme of {database_url!r}")
    return database_url


def _telephony_settings(env: Mapping[str, str], local: Mapping[str, str], production: bool) -> dict[str, Any]:
    """Twilio, the public URL Twilio calls, the voices and the hotline's own numbers."""
    account_sid = env.get("TWILIO_ACCOUNT_SID") or DEV_ACCOUNT_SID
    if not re.fullmatch(r"AC[0-9a-fA-F]{32}", account_sid):
        raise ConfigError(f"TWILIO_ACCOUNT_SID={account_sid!r} is not an account SID (AC + 32 hex)")
    public_base_url = _url(env, "PUBLIC_BASE_URL", "http://127.0.0.1:5000").rstrip("/")
    if production and not public_base_url.startswith("https://"):
        raise ConfigError(f"PUBLIC_BASE_URL={public_base_url!r} must be https in production")
    transfer = env.get("HOTLINE_TRANSFER_NUMBER") or None
    return {
        "public_base_url": public_base_url,
        "twilio_account_sid": account_sid,
        "twilio_auth_token": env.get("TWILIO_AUTH_TOKEN") or local.get("twilio_auth_token", ""),
        "twilio_api_base": _url(env, "TWILIO_API_BASE", "https://api.twilio.com").rstrip("/"),
        "dev_credentials": not env.get("TWILIO_AUTH_TOKEN"),
        "flow_file": Path(env.get("HOTLINE_FLOW_FILE") or DEFAULT_FLOW_FILE),
        "transfer_number": None if transfer is None else _e164(transfer, "HOTLINE_TRANSFER_NUMBER"),
        "voice_th": _voice(env, "HOTLINE_VOICE_TH", Config.voice_th, ()),
        "voice_en": _voice(env, "HOTLINE_VOICE_EN", Config.voice_en, _CLASSIC_VOICES),
        "delete_after_download": _flag(env, "TWILIO_DELETE_AFTER_DOWNLOAD", False),
        "hotline_number": _e164(env.get("HOTLINE_NUMBER") or HOTLINE_NUMBER, "HOTLINE_NUMBER"),
        "sms_from": _sms_from(env.get("HOTLINE_SMS_FROM") or None),
        "webhook_db_budget_s": _number(env, "HOTLINE_WEBHOOK_DB_SECONDS", 4.0, 0.2, 12.0, float),
    }


def data_dir_from_env(env: Mapping[str, str]) -> Path:
    """HOTLINE_DATA_DIR, else the instance dir's data/ (also read by the transcription commands)."""
    instance_dir = Path(env.get("HOTLINE_INSTANCE_DIR", "instance")).resolve()
    return Path(env.get("HOTLINE_DATA_DIR") or instance_dir / "data").resolve()


def engine_choices(env: Mapping[str, str]) -> dict[str, str]:
    """HOTLINE_ENGINE_TH=whisper, HOTLINE_ENGINE_EN_US=vosk … as {"th": "whisper", "en-us": "vosk"}."""
    choices: dict[str, str] = {}
    for name, value in env.items():
        if name.upper().startswith(ENGINE_PREFIX) and value.strip():
            language = name[len(ENGINE_PREFIX) :].lower().replace("_", "-")
            engine = value.strip().lower()
            if engine not in ("whisper", "vosk"):
                raise ConfigError(f"{name}={value!r}: the engine is whisper or vosk")
            choices[language] = engine
    return choices


def transcribers(env: Mapping[str, str]) -> int:
    """HOTLINE_TRANSCRIBERS: recordings transcribed at once (default: one a core)."""
    return int(_number(env, "HOTLINE_TRANSCRIBERS", os.cpu_count() or 1, 1, 64, int))


def whisper_threads(env: Mapping[str, str]) -> int:
    """HOTLINE_WHISPER_THREADS, else the cores shared out among the transcribers (at least one each)."""
    processes = transcribers(env)
    default = max(1, (os.cpu_count() or 1) // processes)
    threads: int = _number(env, "HOTLINE_WHISPER_THREADS", default, 1, 64, int)
    return threads


def whisper_jobs_per_process(env: Mapping[str, str]) -> int:
    """HOTLINE_WHISPER_JOBS_PER_PROCESS, else every transcriber's job in one process, at most 4 to one.

    Jobs in one process share one copy of the Whisper weights (base model: about 440 MB for each
    one-job process, 650 MB for one process with two jobs), as plain faster-whisper's num_workers does
    (bench/whisper_thai.py compares them); a hang or crash there costs all its jobs a rerun, hence the cap.
    """
    jobs: int = _number(env, "HOTLINE_WHISPER_JOBS_PER_PROCESS", min(transcribers(env), 4), 1, 64, int)
    return jobs


def _worker_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """Transcription, downloads, reconciliation and the sweeps' pace."""
    return {
        "vosk_models_spec": env.get("HOTLINE_VOSK_MODELS", ""),
        "whisper_models_spec": env.get("HOTLINE_WHISPER_MODELS", ""),
        "engine_choices": engine_choices(env),
        "whisper_threads": whisper_threads(env),
        "whisper_jobs_per_process": whisper_jobs_per_process(env),
        "transcriber_processes": transcribers(env),
        "transcribe_timeout_s": _number(env, "HOTLINE_TRANSCRIBE_TIMEOUT_SECONDS", 300.0, 1.0, 7200.0, float),
        "max_audio_s": _number(env, "HOTLINE_MAX_AUDIO_SECONDS", 900.0, 10.0, 7200.0, float),
        "transcriber_max_jobs": _number(env, "HOTLINE_TRANSCRIBER_MAX_JOBS", 100, 1, 100000, int),
        "sweep_interval_s": _number(env, "HOTLINE_SWEEP_SECONDS", 2.0, 0.1, 3600.0, float),
        "twilio_reconcile_s": _number(env, "HOTLINE_TWILIO_RECONCILE_SECONDS", 60.0, 5.0, 86400.0, float),
        "download_attempts": _number(env, "HOTLINE_DOWNLOAD_ATTEMPTS", 6, 1, 50, int),
        "download_backoff_s": _number(env, "HOTLINE_DOWNLOAD_BACKOFF_SECONDS", 30.0, 0.0, 86400.0, float),
    }


def _staff_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """Staff sessions, callbacks and working calendar files, and how staff are notified."""
    return {
        "session_idle_minutes": _number(env, "HOTLINE_SESSION_IDLE_MINUTES", 30, 1, 24 * 60, int),
        "session_max_hours": _number(env, "HOTLINE_SESSION_MAX_HOURS", 12, 1, 7 * 24, int),
        "trusted_proxies": _trusted_proxies(env),
        "callbacks_file": Path(env.get("HOTLINE_CALLBACKS_FILE") or DEFAULT_CALLBACKS_FILE),
        "holidays_file": Path(env.get("HOTLINE_HOLIDAYS_FILE") or DEFAULT_HOLIDAYS_FILE),
        "retention_file": Path(env.get("HOTLINE_RETENTION_FILE") or DEFAULT_RETENTION_FILE),
        "smtp_host": _smtp_host(env),
        "smtp_port": _number(env, "HOTLINE_SMTP_PORT", 25, 1, 65535, int),
        "smtp_user": env.get("HOTLINE_SMTP_USER") or None,
        "smtp_password": env.get("HOTLINE_SMTP_PASSWORD") or None,
        "smtp_starttls": _flag(env, "HOTLINE_SMTP_STARTTLS", False),
        "mail_from": _mail_from(env),
        "line_api_base": _url(env, "LINE_API_BASE", "https://api.line.me").rstrip("/"),
        "notify_attempts": _number(env, "HOTLINE_NOTIFY_ATTEMPTS", 5, 1, 50, int),
        "staff_phone_countries": _countries(env.get("HOTLINE_STAFF_PHONE_COUNTRIES") or "66"),
        "bridge_calls_per_user_hour": _number(env, "HOTLINE_BRIDGE_CALLS_PER_USER_HOUR", 5, 1, 100, int),
        "bridge_calls_per_case_hour": _number(env, "HOTLINE_BRIDGE_CALLS_PER_CASE_HOUR", 3, 1, 100, int),
        "notify_backoff_s": _number(env, "HOTLINE_NOTIFY_BACKOFF_SECONDS", 30.0, 0.0, 86400.0, float),
        "route_without_operator": _choice(env, "HOTLINE_ROUTE_WITHOUT_OPERATOR", ("offer", "parent")),
        "console_digits": _choice(env, "HOTLINE_CONSOLE_DIGITS", ("arabic", "thai")),
    }


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    """One of a few words; the first is the default."""
    raw = env.get(name)
    if raw is None or raw == "":
        return choices[0]
    if raw.strip().lower() not in choices:
        raise ConfigError(f"{name}={raw!r} must be one of: {', '.join(choices)}")
    return raw.strip().lower()


def _trusted_proxies(env: Mapping[str, str]) -> int | tuple[ProxyNetwork, ...]:
    """HOTLINE_TRUSTED_PROXIES: a count of proxies (0-5), or their addresses/networks, comma-separated."""
    name, raw = "HOTLINE_TRUSTED_PROXIES", (env.get("HOTLINE_TRUSTED_PROXIES") or "").strip()
    if not raw:
        return 0
    if raw.isdigit():
        return int(_number(env, name, 0, 0, 5, int))
    networks: list[ProxyNetwork] = []
    for part in (p.strip() for p in raw.split(",")):
        try:
            networks.append(ipaddress.ip_network(part))
        except ValueError:
            raise ConfigError(
                f"{name}={raw!r}: {part!r} is not a count of proxies, an IP address or a network"
            ) from None
    return tuple(networks)


def _voice(env: Mapping[str, str], name: str, default: str, classic: tuple[str, ...]) -> str:
    voice = env.get(name) or default
    if not (_VOICE.fullmatch(voice) or voice in classic):
        kinds = "Polly.<name> or Google.<name>" + (" or " + "/".join(classic) if classic else "")
        raise ConfigError(f"{name}={voice!r} is not a Twilio <Say> voice ({kinds})")
    return voice


def _smtp_host(env: Mapping[str, str]) -> str | None:
    host = env.get("HOTLINE_SMTP_HOST") or None
    if host is not None and not _HOST.fullmatch(host):
        raise ConfigError(f"HOTLINE_SMTP_HOST={host!r} is not a host name or address (no scheme, no port)")
    for name, needs in (
        ("HOTLINE_SMTP_USER", "HOTLINE_SMTP_HOST"),
        ("HOTLINE_SMTP_PASSWORD", "HOTLINE_SMTP_USER"),
    ):
        if env.get(name) and not env.get(needs):
            raise ConfigError(f"{name} is set but {needs} is not")
    return host


def _mail_from(env: Mapping[str, str]) -> str:
    value = env.get("HOTLINE_MAIL_FROM") or Config.mail_from
    _name, address = parseaddr(value)
    local, _, domain = address.rpartition("@")
    if not (local and domain) or " " in address:
        raise ConfigError(f"HOTLINE_MAIL_FROM={value!r} is not an e-mail address")
    return value


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r} is not a yes/no value (use 1/0, true/false)")


def _number(env: Mapping[str, str], name: str, default: Any, low: Any, high: Any, kind: type) -> Any:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a {'whole ' if kind is int else ''}number") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={raw!r} must be between {low} and {high}")
    return value


def _url(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name) or default
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{name}={value!r} is not an http(s) URL")
    if parts.query or parts.fragment:
        raise ConfigError(f"{name}={value!r} must not have a query or fragment")
    return value


def e164(value: str) -> str | None:
    """A phone number in E.164, a Thai national one ('02 126 6565') read as Thai; None if it is none."""
    try:
        parsed = phonenumbers.parse(value.strip(), "TH")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))


def _e164(value: str, name: str) -> str:
    number = e164(value)
    if number is None:
        raise ConfigError(f"{name} is not a valid phone number")
    return number


def _countries(value: str) -> frozenset[int]:
    """HOTLINE_STAFF_PHONE_COUNTRIES: country calling codes, '66' or '66,95' (a leading + allowed)."""
    codes = set()
    for item in (part.strip().lstrip("+") for part in value.split(",")):
        if not item.isdigit() or not 1 <= int(item) <= 999:
            raise ConfigError(
                f"HOTLINE_STAFF_PHONE_COUNTRIES={value!r}: {item!r} is not a country calling code"
            )
        codes.add(int(item))
    return frozenset(codes)


def _sms_from(value: str | None) -> str | None:
    if value is None:
        return None
    if value.startswith("MG") and len(value) == 34:
        return value  # a Messaging Service SID
    return _e164(value, "HOTLINE_SMS_FROM")


def _local_secrets(instance_dir: Path) -> dict[str, str]:
    """Read, or create once, development secrets kept beside the SQLite file (mode 0600)."""
    path = instance_dir / LOCAL_SECRETS_FILE
    wanted = {
        "twilio_auth_token": lambda: secrets.token_hex(16),
        "secret_key": lambda: secrets.token_urlsafe(32),
        "data_key": _new_data_key,
        "recording_key": new_recording_key,
    }
    data = _read_local_secrets(path) if path.exists() else {}
    if all(k in data for k in wanted):
        return data
    for key, make in wanted.items():
        data.setdefault(key, make())
    try:
        private_folder("HOTLINE_INSTANCE_DIR", instance_dir)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
        os.fchmod(fd, 0o600)  # a .tmp left by an older run keeps its mode through O_CREAT
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
        os.replace(tmp, path)
    except OSError as exc:
        raise ConfigError(f"{path} cannot be written: {exc.strerror or exc}") from exc
    return data


def _read_local_secrets(path: Path) -> dict[str, str]:
    """The generated secrets as stored: an object of strings, else a ConfigError naming file and field."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path} is not readable JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object of secrets, not a {type(data).__name__}")
    for key, value in data.items():
        if not isinstance(value, str) or not value or _CONTROL.search(value):
            raise ConfigError(f"{path}: {key} must be a non-empty line of text")
    try:
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)  # secrets of an older run that were left readable by others
    except OSError as exc:
        raise ConfigError(f"{path} cannot be made private: {exc.strerror or exc}") from exc
    return data


def _new_data_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode("ascii")
