"""Typed configs: dataclasses built from YAML / CLI dicts with validation.

:func:`from_dict` rejects unknown keys, wrong types and impossible values
*before* any work starts, with a message that names the key.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A config key is unknown, has the wrong type or an impossible value."""


def _check_type(key: str, value: Any, tp: Any) -> Any:
    """``value`` checked (and lightly normalised) against the annotation ``tp``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin is Literal:
        if value in args:
            return value
        raise ConfigError(f"{key}: must be one of {', '.join(map(repr, args))}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        return value if isinstance(value, tp) else from_dict(tp, value, prefix=f"{key}.")
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__} {value!r}")
        kt, vt = args if args else (Any, Any)
        return {_check_type(f"{key} key", k, kt): _check_type(f"{key}.{k}", v, vt) for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _check_type(key, value, a)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{key}: bad value {value!r}")
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        inner = args[0] if args else Any
        return type(value)(_check_type(key, v, inner) for v in value) if origin is list \
            else tuple(_check_type(key, v, inner) for v in value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        hint = ""
        if isinstance(value, str) and _is_number(value):
            # PyYAML reads 1e-3 (no dot) as text
            hint = f"; write it unquoted with a decimal point, e.g. {float(value)!r}"
        raise ConfigError(f"{key}: expected a number, got {value!r}{hint}")
    if tp is str:
        if isinstance(value, str):
            return value
        hint = ""
        if isinstance(value, bool):
            # YAML 1.1 (PyYAML) reads unquoted on/off/yes/no as booleans
            hint = f"; quote it, e.g. {key}: \"{'on' if value else 'off'}\""
        raise ConfigError(f"{key}: expected a string, got {value!r}{hint}")
    if tp is Path:
        if isinstance(value, (str, os.PathLike)):
            return Path(value)
        raise ConfigError(f"{key}: expected a path, got {value!r}")
    return value


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, checking keys and types; then run its
    ``validate()`` (if any) for value ranges.

    Every failure is a :class:`ConfigError` whose message starts with the key
    (``prefix`` + key for nested configs), raised before any work starts.
    """
    if not isinstance(data, dict):
        where = prefix.rstrip(".") + ": " if prefix else ""
        raise ConfigError(f"{where}expected a mapping of {cls.__name__} options, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    names = [f.name for f in fields]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown config key '{prefix}{key}'{hint}; valid keys: {', '.join(names)}")
        kwargs[key] = _check_type(f"{prefix}{key}", value, hints[key])
    missing = [f.name for f in fields if f.name not in kwargs and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING and f.init]
    if missing:
        raise ConfigError(f"{prefix}{missing[0]}: required key is missing")
    obj = cls(**kwargs)
    if hasattr(obj, "validate"):
        obj.validate()
    return obj


def load_yaml_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML file of options as a mapping (empty file = no options).

    Raises ``FileNotFoundError`` for a missing file and :class:`ConfigError`
    (with the line) for a syntax error or a file that is not a mapping.
    Only plain YAML is parsed (``safe_load``): tags that build Python objects are refused.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} not found")
    try:
        with open(path, "r", encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        if isinstance(e, yaml.constructor.ConstructorError):
            raise ConfigError(f"{path}:{where}: tags that build Python objects (e.g. !!python/...) "
                              "are not allowed; use plain values") from None
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path}:{where}: not valid YAML ({problem})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of options (key: value lines), "
                          f"got {type(data).__name__}")
    return data


def to_dict(obj) -> dict[str, Any]:
    """Dataclass -> plain dict of YAML-safe values (tuples become lists)."""
    def plain(v):
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v
    return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}


def require(cond: bool, key: str, message: str) -> None:
    """Raise :class:`ConfigError` ``"<key>: <message>"`` unless ``cond``."""
    if not cond:
        raise ConfigError(f"{key}: {message}")


def bundled_yaml_names(package: str) -> list[str]:
    """Names of the YAML files shipped in ``package`` (e.g. ``patchforensics.suites``), sorted."""
    from importlib import resources

    return sorted(p.name[:-5] for p in resources.files(package).iterdir() if p.name.endswith(".yaml"))


def yaml_file(path_or_name: str | os.PathLike, package: str, what: str) -> Path:
    """``path_or_name`` when it is a file, else the YAML file of that name shipped in ``package``;
    ``FileNotFoundError`` naming the shipped ones (``what``: "suite", "grid" …)."""
    from importlib import resources

    path = Path(path_or_name)
    if path.is_file():
        return path
    names = bundled_yaml_names(package)
    if str(path_or_name) in names:
        return Path(str(resources.files(package) / f"{path_or_name}.yaml"))
    raise FileNotFoundError(f"{what} {path_or_name} not found; give a YAML file or one of the bundled {what}s: "
                            f"{', '.join(names)}")

