"""Settings declared once, as dataclass fields, and everything derived from the declaration.

A setting is a field made with :func:`option`: its metadata carries the help text, the choices
and the bounds. From that one declaration come the command line's flags (:func:`add_flags`,
:func:`flag_values`), the checks every instance passes (:func:`check_options`, called from the
dataclasses' ``__post_init__``), the web studio's form parsing (:func:`parse_text`) and the
JSON schema the studio's OpenAPI document shows (:func:`json_schema`). Adding a setting is then
one field; the CLI, the studio, the API description and the output's metadata follow.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from dataclasses import MISSING, Field, dataclass
from functools import lru_cache
from typing import Any, Callable, Mapping, Sequence

from .errors import SettingsError

#: The key of a field's metadata under which its :class:`Option` is kept.
OPTION_KEY = "painterly.option"


@dataclass(frozen=True)
class Option:
    """How one setting is presented and checked (see :func:`option`)."""

    help: str
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    positive: bool = False
    cli: bool = True
    flag: str | None = None
    metavar: str | None = None
    studio: bool = False
    studio_choices: tuple[Any, ...] | None = None
    studio_default: Any = None
    studio_maximum: str | None = None


def option(default: Any = MISSING, *, help: str, choices: Sequence[Any] | None = None, minimum: float | None = None,
           maximum: float | None = None, positive: bool = False, cli: bool = True, flag: str | None = None,
           metavar: str | None = None, studio: bool = False, studio_choices: Sequence[Any] | None = None,
           studio_default: Any = None, studio_maximum: str | None = None, compare: bool = True) -> Any:
    """A dataclass field that is a setting.

    - ``help``: one line for ``--help`` and the API description; ``{default}`` is replaced by
      the field's default.
    - ``choices``: the values allowed; ``minimum``/``maximum``: bounds of a number (or of each
      number of a tuple); ``positive``: above ``minimum`` (0 when not given), finite.
    - ``cli``: give the setting a flag (``flag``, default ``--name-with-dashes``); False where a
      command reads it some other way (files, for instance).
    - ``studio``: a field of the web studio's form, restricted to ``studio_choices`` when given,
      ``studio_default`` when the form leaves it out (None: the method's own default), at most
      the studio's limit named ``studio_maximum`` (an attribute of ``painterly.server.Limits``).
    """
    meta = Option(help=help, choices=tuple(choices) if choices is not None else None, minimum=minimum, maximum=maximum,
                  positive=positive, cli=cli, flag=flag, metavar=metavar, studio=studio,
                  studio_choices=tuple(studio_choices) if studio_choices is not None else None,
                  studio_default=studio_default, studio_maximum=studio_maximum)
    return dataclasses.field(default=default, compare=compare, metadata={OPTION_KEY: meta})


@dataclass(frozen=True)
class Setting:
    """One declared setting: the field's name, default, type (``kind`` is its scalar type,
    ``many`` whether it is a tuple of them) and its :class:`Option`."""

    name: str
    default: Any
    kind: type
    many: bool
    option: Option

    @property
    def flag(self) -> str:
        return self.option.flag or "--" + self.name.replace("_", "-")

    @property
    def help(self) -> str:
        """The help text with its default filled in."""
        return self.help_with(self.default)

    def help_with(self, default: Any) -> str:
        """The help text saying ``default`` is the default (numbers as ``%g``, tuples spaced)."""
        shown = " ".join(map(str, default)) if isinstance(default, tuple) else f"{default:g}" if isinstance(default, float) else default
        return self.option.help.replace("{default}", str(shown))


def _kind(annotation: Any) -> tuple[type, bool]:
    """``(scalar type, is a tuple)`` of an annotation such as ``tuple[float, ...] | None``."""
    parts = typing.get_args(annotation) if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union else (annotation,)
    parts = tuple(part for part in parts if part is not type(None))
    for part in parts:
        if typing.get_origin(part) is tuple:
            return typing.get_args(part)[0], True
    return (bool if bool in parts else parts[0]), False


@lru_cache(maxsize=None)
def settings_of(cls: type) -> tuple[Setting, ...]:
    """Every setting :func:`option` declared on the dataclass ``cls``, in field order."""
    hints = typing.get_type_hints(cls)
    found = []
    for item in dataclasses.fields(cls):
        if OPTION_KEY in item.metadata:
            kind, many = _kind(hints[item.name])
            found.append(Setting(item.name, _default(item), kind, many, item.metadata[OPTION_KEY]))
    return tuple(found)


def _default(item: Field) -> Any:
    if item.default is not MISSING:
        return item.default
    return item.default_factory() if item.default_factory is not MISSING else None


def cli_settings(cls: type) -> tuple[Setting, ...]:
    """The settings of ``cls`` the command line shows as flags."""
    return tuple(setting for setting in settings_of(cls) if setting.option.cli)


def studio_settings(cls: type) -> tuple[Setting, ...]:
    """The settings of ``cls`` the web studio's form takes."""
    return tuple(setting for setting in settings_of(cls) if setting.option.studio)


# -- checks ------------------------------------------------------------------------------------


def check_options(instance: Any) -> None:
    """Refuse a value outside its field's choices or bounds with a :class:`SettingsError`."""
    for setting in settings_of(type(instance)):
        value = getattr(instance, setting.name)
        if value is None:
            continue
        for item in value if setting.many and isinstance(value, tuple) else (value,):
            check_value(setting, item)


def check_value(setting: Setting, value: Any, *, choices: Sequence[Any] | None = None) -> None:
    """One value (one element of a tuple setting) against ``setting``'s choices and bounds;
    ``choices`` replaces the declared ones (empty: not checked)."""
    name, meta = setting.name, setting.option
    choices = choices if choices is not None else meta.choices
    if choices and not any(value == choice and type(value) is type(choice) for choice in choices):
        listed = ", ".join(str(choice) for choice in choices)
        raise SettingsError(f"unknown {name} {_short(value)}: {name} must be one of {listed}")
    if meta.minimum is None and meta.maximum is None and not meta.positive:
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or not _within(meta, value):
        raise SettingsError(f"{name} {_short(value)} is out of range: {name} must be {describe_bounds(setting)}")


def _within(meta: Option, value: float) -> bool:
    low = meta.minimum if meta.minimum is not None else (0 if meta.positive else -math.inf)
    high = meta.maximum if meta.maximum is not None else math.inf
    return (value > low if meta.positive else value >= low) and value <= high


def describe_bounds(setting: Setting, *, maximum: float | None = None) -> str:
    """The bounds in words: ``between 0 and 1``, ``at least 1``, ``a positive number`` ..."""
    meta = setting.option
    high = maximum if maximum is not None else meta.maximum
    if meta.minimum is not None and high is not None:
        if setting.kind is int:
            return f"between {meta.minimum} and {high}"
        return f"between {meta.minimum:g} and {high:g}"
    if meta.positive:
        return f"a number > {meta.minimum or 0:g}"
    if setting.kind is int:
        return f"at least {meta.minimum}"
    return f"a finite number >= {meta.minimum:g}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 42 else text[:40] + "..."


# -- the command line ----------------------------------------------------------------------------


def add_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type, *, skip: Sequence[str] = (),
              defaults: Mapping[str, Any] | None = None, default_words: str | None = None,
              check: bool = False) -> None:
    """A flag for each of ``cls``'s CLI settings but ``skip``. A flag defaults to ``defaults``'
    value for it, else None (not given: the dataclass's value, or the preset's or recipe's,
    which help then calls ``default_words``). Values are checked when the dataclass is made;
    ``check`` also checks the declared bounds as the flags are read (a usage error naming the
    flag), for commands that reach the dataclass only after long work or through other code."""
    defaults = defaults or {}
    for setting in cli_settings(cls):
        if setting.name in skip:
            continue
        default = defaults.get(setting.name)
        shown = default if default is not None else default_words or setting.default
        keywords: dict[str, Any] = {"dest": setting.name, "default": default, "help": setting.help_with(shown)}
        if setting.kind is bool and not setting.many:
            keywords["action"] = argparse.BooleanOptionalAction
        else:
            keywords["type"] = _parser_for(setting, check=check)
            if setting.option.metavar:
                keywords["metavar"] = setting.option.metavar
            if setting.many:
                keywords["nargs"] = "+"
            if setting.option.choices is not None:
                keywords["choices"] = setting.option.choices
        parser.add_argument(setting.flag, **keywords)


def _parser_for(setting: Setting, *, check: bool) -> Callable[[str], Any]:
    kind = setting.kind

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'a whole number' if kind is int else 'a number'}, got {text!r}") from None
        try:
            if check:
                check_value(setting, value, choices=())  # argparse checks the choices itself
        except SettingsError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
        return value

    return parse if kind in (int, float) else kind


def flag_values(args: argparse.Namespace, cls: type, *, skip: Sequence[str] = ()) -> dict[str, Any]:
    """The flags of :func:`add_flags` that were given, as ``cls``'s keywords (lists become tuples)."""
    values = {}
    for setting in cli_settings(cls):
        value = getattr(args, setting.name, None)
        if setting.name not in skip and value is not None:
            values[setting.name] = tuple(value) if isinstance(value, list) else value
    return values


def keywords(instance: Any) -> dict[str, Any]:
    """Every declared setting of ``instance`` by name: the keywords that make it again."""
    return {setting.name: getattr(instance, setting.name) for setting in settings_of(type(instance))}


# -- records, the studio's form and the API ------------------------------------------------------


def from_record(cls: type, values: Mapping[str, Any], **extra: Any) -> Any:
    """``cls`` from a record of its settings (``to_dict``'s, or an output's metadata): keys that
    are not its settings are left, lists (as JSON gives them back) become tuples."""
    names = {setting.name for setting in settings_of(cls)}
    kept = {key: tuple(value) if isinstance(value, list) else value for key, value in values.items() if key in names}
    return cls(**kept, **extra)


def parse_text(setting: Setting, text: str, *, maximum: float | None = None, choices: Sequence[Any] | None = None) -> Any:
    """A form field's text as ``setting``'s value, refused (:class:`SettingsError`) when it is not
    one, or outside the choices and bounds (``maximum``: a lower limit of the studio's own)."""
    name, kind = setting.name, setting.kind
    if setting.many:
        return tuple(parse_numbers(text, name))
    if kind is bool:
        if text.lower() not in ("true", "false", "1", "0", "on", "off"):
            raise SettingsError(f"{name} must be true or false, got {text[:40]!r}")
        return text.lower() in ("true", "1", "on")
    if kind is int:
        try:
            value: Any = int(text)
        except ValueError:
            raise SettingsError(f"{name} must be a whole number, got {text[:40]!r}") from None
        low = setting.option.minimum if setting.option.minimum is not None else -math.inf
        high = min(maximum if maximum is not None else math.inf, setting.option.maximum if setting.option.maximum is not None else math.inf)
        if not low <= value <= high:
            raise SettingsError(f"{name} {value} is out of range: choose {low} to {high}")
        return value
    if kind is float:
        numbers = parse_numbers(text, name)
        meta = setting.option
        if len(numbers) != 1 or not _within(meta, numbers[0]) or (maximum is not None and numbers[0] > maximum):
            raise SettingsError(f"{name} must be a number {_range_words(setting, maximum)}, got {text[:40]!r}")
        return numbers[0]
    check_value(setting, text, choices=choices or setting.option.studio_choices)
    return text


def _range_words(setting: Setting, maximum: float | None) -> str:
    meta = setting.option
    high = maximum if maximum is not None else meta.maximum
    low = meta.minimum if meta.minimum is not None else 0
    if high is not None:
        return f"from {low:g} to {high:g}"
    return f"above {low:g}" if meta.positive else f"of at least {low:g}"


def parse_numbers(text: str, name: str) -> list[float]:
    """Numbers separated by spaces or commas, all finite."""
    try:
        values = [float(part) for part in text.replace(",", " ").split()]
    except ValueError:
        raise SettingsError(f"{name} must be numbers, got {text[:40]!r}") from None
    if not values or not all(math.isfinite(value) for value in values):
        raise SettingsError(f"{name} must be finite numbers, got {text[:40]!r}")
    return values


_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string"}


def json_schema(setting: Setting, *, maximum: float | None = None, default: Any = None,
                description: str | None = None) -> dict[str, Any]:
    """The JSON schema of ``setting`` as the studio's form takes it (a tuple of numbers: text such
    as ``'3 7'``)."""
    meta = setting.option
    schema: dict[str, Any] = {"type": "string" if setting.many else _JSON_TYPES[setting.kind]}
    choices = meta.studio_choices or meta.choices
    if choices is not None:
        schema["enum"] = list(choices)
    if not setting.many:
        if meta.minimum is not None or meta.positive:
            schema["exclusiveMinimum" if meta.positive else "minimum"] = meta.minimum or 0
        high = maximum if maximum is not None else meta.maximum
        if high is not None:
            schema["maximum"] = high
    if default is not None:
        schema["default"] = default
    schema["description"] = description or setting.help
    return schema
