"""The config file: defaults for a team's targets and named environments (pure).

`[tool.fsmigrate]` in `pyproject.toml`, or the same keys at the top of `fsmigrate.toml`,
read with tomllib (tomli before Python 3.11). Environments live under
`[tool.fsmigrate.env.NAME]` (`[env.NAME]` in `fsmigrate.toml`) and take the same keys,
plus `always-confirm`.

Every setting is resolved in one order (docs/team-workflow.md):

1. a flag on the command line (or a keyword of `api.Config.from_file`);
2. an environment variable (FSMIGRATE_PROJECT, FSMIGRATE_STATE...);
3. the selected environment's key;
4. the file's top-level key (the defaults);
5. fsmigrate's built-in default (GOOGLE_CLOUD_PROJECT and GOOGLE_CLOUD_QUOTA_PROJECT,
   ambient variables of the Google tools, come just before it: a config file that names
   a project or a quota project wins over them).

Each resolved value says where it came from (`fsmigrate config`). Nothing here reaches
Firestore, prints or exits: a bad file is a `ConfigError` (exit 2) of one line.
"""

from __future__ import annotations

import difflib
import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from fsmigrate.engine.batching import (
    DEFAULT_BATCH_BYTES,
    MAX_BATCH,
    MAX_BATCH_BYTES,
    MIN_BATCH_BYTES,
)
from fsmigrate.engine.runner import MAX_CONCURRENCY
from fsmigrate.errors import UsageError
from fsmigrate.firestore.connection import parse_endpoint
from fsmigrate.firestore.store import DEFAULT_DATABASE, RESERVED_ROOT, parse_patience

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

PYPROJECT = "pyproject.toml"
OWN_TOML = "fsmigrate.toml"
CONFIG_ENV = "FSMIGRATE_CONFIG"
ENV_ENV = "FSMIGRATE_ENV"
MAX_WORKERS = 64
RUNNERS = ("local", "beam")


class ConfigError(UsageError):
    """A config file that cannot be used: not TOML, an unknown key or environment, a value
    of the wrong type or out of range (exit 2, like any bad option)."""


# ---- the keys ------------------------------------------------------------------------------


def _positive(value: Any) -> Optional[str]:
    return None if value > 0 and math.isfinite(value) else "must be above 0"


def _between(low: float, high: float) -> Callable[[Any], Optional[str]]:
    def check(value: Any) -> Optional[str]:
        return None if low <= value <= high else f"must be from {low} to {high}"

    return check


def _top_level_collection(value: Any) -> Optional[str]:
    return None if value and "/" not in value else "must be a top-level collection id"


def _one_of(*choices: str) -> Callable[[Any], Optional[str]]:
    def check(value: Any) -> Optional[str]:
        return None if value in choices else f"must be one of {', '.join(choices)}"

    return check


def _non_empty(value: Any) -> Optional[str]:
    return None if value.strip() else "must not be empty"


def _endpoint(value: Any) -> Optional[str]:
    try:
        parse_endpoint(value)
    except UsageError:
        return "must be HOST[:PORT], e.g. firestore.example.com or 10.0.0.5:443"
    return None


def _duration(value: Any) -> Optional[str]:
    try:
        parse_patience(value, "patience")
    except UsageError:
        return "must be a positive duration like 10m, 90s or 1h"
    return None


@dataclass(frozen=True)
class Key:
    """One setting: its TOML name, type, built-in default, the flag and environment
    variable that override it, and a check of its value."""

    name: str
    kind: type
    default: Any
    help: str
    flag: Optional[str] = None
    envvar: Optional[str] = None
    check: Optional[Callable[[Any], Optional[str]]] = None
    path: bool = False  # relative to the config file's directory when read from it
    run: bool = False  # a run option (writing commands), not a global one
    env_only: bool = False  # only in an environment's table

    @property
    def attr(self) -> str:
        return self.name.replace("-", "_")


KEYS: dict[str, Key] = {
    k.name: k
    for k in [
        Key("project", str, None, "Google Cloud project", "--project", "FSMIGRATE_PROJECT",
            _non_empty),
        Key("database", str, DEFAULT_DATABASE, "Firestore database id", "--database",
            "FSMIGRATE_DATABASE", _non_empty),
        Key("state", str, "state.db", "SQLite state file", "--state", "FSMIGRATE_STATE",
            _non_empty, path=True),
        # A key, not a default: a missing directory is refused (a typo would start a fresh
        # audit trail) unless the file says this one is meant to be made.
        Key("create-state-dir", bool, False, "create the state file's directory when it "
            "does not exist", "--create-state-dir"),
        Key("migrations", str, "migrations", "directory of migration scripts",
            "--migrations", "FSMIGRATE_MIGRATIONS", _non_empty, path=True),
        Key("markers-collection", str, RESERVED_ROOT, "collection of fsmigrate's own "
            "documents", "--markers-collection", "FSMIGRATE_MARKERS", _top_level_collection),
        Key("emulator-host", str, None, "the Firestore emulator (host:port, loopback)",
            None, "FIRESTORE_EMULATOR_HOST", _non_empty),
        Key("endpoint", str, None, "the Firestore endpoint, HOST[:PORT] (a Private Service "
            "Connect endpoint, a proxy) [firestore.googleapis.com]", "--endpoint",
            "FSMIGRATE_ENDPOINT", _endpoint),
        Key("credentials", str, None, "a credentials file (a service account key...) "
            "[the application default credentials]", "--credentials",
            "FSMIGRATE_CREDENTIALS", _non_empty, path=True),
        Key("impersonate-service-account", str, None, "the service account to act as "
            "(its email)", "--impersonate-service-account",
            "FSMIGRATE_IMPERSONATE_SERVICE_ACCOUNT", _non_empty),
        Key("quota-project", str, None, "the project billed for the calls, whose quota "
            "they use [the credentials' own]", "--quota-project", None, _non_empty),
        Key("lock-ttl", float, None, "seconds a dead runner's lock lasts [300]", None,
            "FSMIGRATE_LOCK_TTL", _positive),
        Key("patience", str, None, "how long to retry Firestore without progress [10m]",
            "--patience", "FSMIGRATE_PATIENCE", _duration),
        Key("batch-size", int, MAX_BATCH, "operations per atomic commit", "--batch-size",
            check=_between(1, MAX_BATCH), run=True),
        Key("batch-bytes", int, DEFAULT_BATCH_BYTES, "encoded bytes per commit",
            "--batch-bytes", check=_between(MIN_BATCH_BYTES, MAX_BATCH_BYTES), run=True),
        Key("concurrency", int, 1, "batches committed at once", "--concurrency",
            check=_between(1, MAX_CONCURRENCY), run=True),
        Key("max-rate", float, None, "cap in operations per second", "--max-rate",
            check=_positive, run=True),
        Key("ramp", bool, None, "ramp traffic up [on for a real project]", "--ramp/--no-ramp",
            run=True),
        Key("ramp-start", float, None, "where the ramp starts, ops/s [500]", "--ramp-start",
            check=_positive, run=True),
        Key("max-skip-ratio", float, None, "stop a run whose skipped operations pass this "
            "share of its last 1,000", "--max-skip-ratio", check=_between(0, 1), run=True),
        Key("runner", str, "local", "local or beam", "--runner", check=_one_of(*RUNNERS),
            run=True),
        Key("workers", int, 2, "DirectRunner worker processes (--runner beam)", "--workers",
            check=_between(1, MAX_WORKERS), run=True),
        Key("always-confirm", bool, False, "ask before every apply, even on the emulator; "
            "--yes only with --env NAME on the command line", env_only=True),
    ]
}  # fmt: skip
RUN_KEYS = [k for k in KEYS.values() if k.run]
# the Google tools' ambient variables: below the file, above nothing
AMBIENT = {"project": "GOOGLE_CLOUD_PROJECT", "quota-project": "GOOGLE_CLOUD_QUOTA_PROJECT"}
CONNECTION_KEYS = ("endpoint", "credentials", "impersonate-service-account", "quota-project")
ENV_TABLE = "env"


def coerce(key: Key, value: Any, where: str) -> Any:
    """`value` checked against `key` (an int is a float; a bool is never a number)."""
    kind = key.kind
    if kind is bool:
        ok = isinstance(value, bool)
    elif isinstance(value, bool):
        ok = False
    elif kind is float:
        ok = isinstance(value, (int, float))
    else:
        ok = isinstance(value, kind)
    if not ok:
        name = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
        raise ConfigError(f"{where}: {key.name} must be {name[kind]}, got {value!r}")
    if kind is float:
        value = float(value)
    problem = key.check(value) if key.check else None
    if problem:
        raise ConfigError(f"{where}: {key.name} {problem}, got {value!r}")
    return value


def parse_env_value(key: Key, text: str) -> Any:
    """An environment variable's text as `key`'s type."""
    where = key.envvar or key.name
    if key.kind is str:
        return coerce(key, text, where)
    try:
        value: Any = {int: int, float: float}[key.kind](text)
    except (KeyError, ValueError):
        raise ConfigError(f"{where}: {text!r} is not a valid {key.name}") from None
    return coerce(key, value, where)


# ---- the file ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigFile:
    """One config file, checked: its defaults and its environments."""

    path: Path
    defaults: dict[str, Any]
    environments: dict[str, dict[str, Any]]
    table: str  # "[tool.fsmigrate]" or "fsmigrate.toml"

    @property
    def directory(self) -> Path:
        return self.path.parent

    def env_table(self, name: str) -> str:
        if self.table == "[tool.fsmigrate]":
            return f"[tool.fsmigrate.env.{name}]"
        return f"[env.{name}]"

    def where(self, env: Optional[str] = None) -> str:
        return f"{self.path.name} {self.env_table(env) if env else self.table}"

    def environment(self, name: str) -> dict[str, Any]:
        if name not in self.environments:
            known = ", ".join(sorted(self.environments)) or "none defined"
            hint = difflib.get_close_matches(name, list(self.environments), n=1)
            also = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ConfigError(
                f"no environment {name!r} in {self.path}{also}; environments: {known}"
            )
        return self.environments[name]


def read(path: Path) -> ConfigFile:
    """Read and check `path` (a pyproject.toml or an fsmigrate.toml)."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    if path.name == PYPROJECT:
        table = data.get("tool", {}).get("fsmigrate")
        if table is None:
            raise ConfigError(f"{path} has no [tool.fsmigrate] table")
        label = "[tool.fsmigrate]"
    else:
        table, label = data, OWN_TOML
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: {label} must be a table")
    where = f"{path.name} {label}"
    envs = table.get(ENV_TABLE, {})
    if not isinstance(envs, dict) or not all(isinstance(v, dict) for v in envs.values()):
        raise ConfigError(f"{where}: {ENV_TABLE} must hold tables, one per environment")
    defaults = _checked(table, where, environment=False)
    file = ConfigFile(path.resolve(), defaults, {}, label)
    for name, body in envs.items():
        file.environments[name] = _checked(body, file.where(name), environment=True)
    return file


def _checked(table: Mapping[str, Any], where: str, *, environment: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in table.items():
        if name == ENV_TABLE and not environment:
            continue
        key = KEYS.get(name)
        if key is None or (key.env_only and not environment):
            names = [k for k in KEYS if environment or not KEYS[k].env_only]
            hint = difflib.get_close_matches(name.replace("_", "-"), names, n=1)
            also = f" (did you mean {hint[0]!r}?)" if hint else ""
            if key is not None:
                also = " (it belongs in an environment's table)"
            raise ConfigError(f"{where}: unknown key {name!r}{also}; keys: {', '.join(names)}")
        out[name] = coerce(key, value, where)
    return out


def find(start: Path) -> Optional[Path]:
    """The config file that applies in `start`: the nearest directory (from `start` up)
    with an fsmigrate.toml or a pyproject.toml that has [tool.fsmigrate]. Both in one
    directory is refused: one of them would be ignored."""
    for folder in [start, *start.parents]:
        own = folder / OWN_TOML
        pyproject = folder / PYPROJECT
        in_pyproject = pyproject.is_file() and _has_tool_table(pyproject)
        if own.is_file() and in_pyproject:
            raise ConfigError(
                f"both {own} and {pyproject} [tool.fsmigrate] configure fsmigrate; keep one"
            )
        if own.is_file():
            return own
        if in_pyproject:
            return pyproject
    return None


def _has_tool_table(path: Path) -> bool:
    try:
        data = path.read_bytes()
    except OSError:
        return False
    try:
        return "fsmigrate" in tomllib.loads(data.decode("utf-8", "replace")).get("tool", {})
    except tomllib.TOMLDecodeError as exc:
        if b"tool.fsmigrate" in data:  # ours, broken: say so rather than ignore it
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        return False  # a broken pyproject.toml without our table is not ours to judge


# ---- resolving -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    value: Any
    source: str  # "--project", "FSMIGRATE_PROJECT", "pyproject.toml [tool.fsmigrate]"...


@dataclass(frozen=True)
class Settings:
    """Every key's value and where it came from.

    Attributes:
        values: Each key's value and source, by the key's name (`max-rate`).
        file: The config file, if one was read.
        environment: The environment chosen, if any.
        environment_source: How it was chosen: `--env`, `FSMIGRATE_ENV`, `env=`.
        environments: The file's environments.
    """

    values: dict[str, Setting]
    file: Optional[Path] = None
    environment: Optional[str] = None
    environment_source: Optional[str] = None  # "--env" or "FSMIGRATE_ENV"
    environments: tuple[str, ...] = ()  # every environment the file defines

    def __getitem__(self, name: str) -> Any:
        return self.values[name].value

    def source(self, name: str) -> str:
        return self.values[name].source

    @property
    def always_confirm(self) -> bool:
        return bool(self["always-confirm"])

    def run_options(self) -> dict[str, Any]:
        """The run keys as keyword arguments of the api's writing functions."""
        return {k.attr: self[k.name] for k in RUN_KEYS}

    def check_yes(self) -> None:
        """--yes against an environment that always asks is refused unless the
        environment was named on the command line (not only FSMIGRATE_ENV)."""
        if self.always_confirm and self.environment_source != "--env":
            raise UsageError(
                f"environment {self.environment} always asks for confirmation: --yes is "
                f"accepted only with `--env {self.environment}` on the command line"
            )

    def to_json(self) -> dict[str, Any]:
        return {
            "file": str(self.file) if self.file else None,
            "environment": self.environment,
            "environment_source": self.environment_source,
            "environments": list(self.environments),
            "settings": {
                name: {"value": s.value, "source": s.source} for name, s in self.values.items()
            },
        }


@dataclass
class Given:
    """What the caller was given above the file: flags and environment variables."""

    flags: dict[str, Any] = field(default_factory=dict)  # key name -> value (not None)
    flag_names: dict[str, str] = field(default_factory=dict)  # key name -> how it was given


def resolve(
    file: Optional[ConfigFile],
    env: Optional[str],
    given: Given,
    environ: Mapping[str, str],
    *,
    env_source: Optional[str] = None,
) -> Settings:
    """Each key from the first of: a flag, an environment variable, the environment's
    key, the file's top-level key, the ambient variable, the built-in default."""
    if env is not None and file is None:
        raise ConfigError(
            f"environment {env!r} ({env_source or '--env'}) needs a config file: "
            f"[tool.fsmigrate.env.{env}] in {PYPROJECT} or [env.{env}] in {OWN_TOML}"
        )
    chosen = file.environment(env) if file is not None and env is not None else {}
    out: dict[str, Setting] = {}
    for key in KEYS.values():
        out[key.name] = _one(key, file, env, chosen, given, environ)
    return Settings(
        out,
        file=file.path if file else None,
        environment=env,
        environment_source=env_source if env else None,
        environments=tuple(sorted(file.environments)) if file else (),
    )


def _one(
    key: Key,
    file: Optional[ConfigFile],
    env: Optional[str],
    chosen: Mapping[str, Any],
    given: Given,
    environ: Mapping[str, str],
) -> Setting:
    if key.name in given.flags:
        return Setting(given.flags[key.name], given.flag_names.get(key.name, key.flag or ""))
    if key.envvar and environ.get(key.envvar):
        return Setting(parse_env_value(key, environ[key.envvar]), key.envvar)
    if file is not None and key.name in chosen:
        return Setting(_from_file(key, chosen[key.name], file), file.where(env))
    if file is not None and key.name in file.defaults:
        return Setting(_from_file(key, file.defaults[key.name], file), file.where())
    ambient = AMBIENT.get(key.name)
    if ambient and environ.get(ambient):
        return Setting(environ[ambient], ambient)
    return Setting(key.default, "default")


def _from_file(key: Key, value: Any, file: ConfigFile) -> Any:
    if key.path:
        return str(file.directory / Path(value).expanduser())
    return value


def load(
    path: Optional[Path],
    env: Optional[str],
    given: Optional[Given] = None,
    environ: Optional[Mapping[str, str]] = None,
    *,
    cwd: Optional[Path] = None,
    env_source: Optional[str] = None,
) -> Settings:
    """Find (or read `path`), pick the environment (`env`, else FSMIGRATE_ENV), resolve."""
    environ = {} if environ is None else environ
    if path is None and environ.get(CONFIG_ENV):
        path = Path(environ[CONFIG_ENV])
    found = Path(path) if path is not None else find((cwd or Path.cwd()).resolve())
    file = read(found) if found is not None else None
    if env is None and environ.get(ENV_ENV):
        env, env_source = environ[ENV_ENV], ENV_ENV
    elif env is not None and env_source is None:
        env_source = "--env"
    return resolve(file, env, given or Given(), environ, env_source=env_source)
