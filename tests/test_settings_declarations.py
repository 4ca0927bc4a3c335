"""Every setting is declared once: the CLI, the studio, the API schema and the metadata must not drift."""

from __future__ import annotations

import argparse

import pytest
from starlette.datastructures import FormData

from painterly.adain import StylizeSettings
from painterly.bench import BenchConfig
from painterly.cli import build_parser
from painterly.errors import SettingsError
from painterly.gatys import GatysSettings
from painterly.options import cli_settings, settings_of, studio_settings
from painterly.server import Limits
from painterly.server.form import FORM_FIELDS, STUDIO_FIELDS, parse_settings
from painterly.server.openapi import job_form
from painterly.training import TrainConfig

#: Which command shows each dataclass's CLI settings as flags.
COMMANDS = [("stylize", StylizeSettings), ("optimize", GatysSettings), ("sweep", GatysSettings),
            ("train", TrainConfig), ("bench", BenchConfig)]


def subcommand(name: str) -> argparse.ArgumentParser:
    [subparsers] = [action for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction)]
    return subparsers.choices[name]


@pytest.mark.parametrize(("command", "cls"), COMMANDS, ids=[f"{c}-{k.__name__}" for c, k in COMMANDS])
def test_every_cli_setting_has_its_flag_with_its_choices(command: str, cls: type) -> None:
    actions = {option: action for action in subcommand(command)._actions for option in action.option_strings}
    assert cli_settings(cls), cls
    for setting in cli_settings(cls):
        assert setting.flag in actions, f"{cls.__name__}.{setting.name} has no {setting.flag} in painterly {command}"
        action = actions[setting.flag]
        assert action.dest == setting.name
        if setting.option.choices is not None and setting.kind is not bool:
            # A flag that also takes something else (--init an image file) names the choices in its help.
            assert tuple(action.choices or ()) == setting.option.choices or \
                action.choices is None and all(str(choice) in action.help for choice in setting.option.choices)
        assert setting.option.help.split("{default}")[0][:30] in action.help


def test_bounds_are_checked_as_the_flags_are_read_or_by_the_dataclass(capsys) -> None:
    for command, args in [("train", ["--batch-size", "0"]), ("optimize", ["c.png", "s.png", "--style-scale", "0"])]:
        with pytest.raises(SystemExit):
            subcommand(command).parse_args(args)
    assert "style_scale 0.0 is out of range: style_scale must be a number > 0" in capsys.readouterr().err
    args = subcommand("stylize").parse_args(["c.png", "--style", "s.png", "-o", "o.png", "--alpha", "2"])
    with pytest.raises(SettingsError, match="alpha must be between 0 and 1"):
        StylizeSettings(alpha=args.alpha)


def form(**fields: str) -> FormData:
    return FormData([(name, value) for name, value in fields.items()])


#: A valid value, as form text, for each studio setting; a new one must be added here.
EXAMPLE_TEXT = {"method": "stylize", "preset": "d2l", "seed": "7", "tv_weight": "0.5", "iterations": "12",
                "size": "64", "init": "noise", "preserve_color": "luminance", "style_loss": "histogram",
                "alpha": "0.25", "style_weights": "1 3", "crop": "true", "feature_transform": "wct"}


def test_every_studio_setting_is_described_and_parsed_as_declared() -> None:
    limits = Limits(max_size=512, max_iterations=200)
    schema = job_form(limits=limits, examples=["starry_night"])["properties"]
    assert set(FORM_FIELDS) == set(schema) == {"content", "style", *STUDIO_FIELDS}
    declared = [*studio_settings(StylizeSettings), *studio_settings(GatysSettings)]
    assert {setting.name for setting in declared} <= set(STUDIO_FIELDS)
    for name, (setting, methods) in STUDIO_FIELDS.items():
        described = schema[name]
        assert described.get("enum") == list(setting.option.studio_choices or setting.option.choices or []) or \
            "enum" not in described and not (setting.option.studio_choices or setting.option.choices)
        assert described.get("minimum", described.get("exclusiveMinimum")) == setting.option.minimum or \
            setting.option.minimum is None and not setting.option.positive
        high = limits.maximum(setting) if limits.maximum(setting) is not None else setting.option.maximum
        assert described.get("maximum") == high
        assert methods, name
    assert set(EXAMPLE_TEXT) == set(STUDIO_FIELDS), "give each studio setting an example value"
    values = parse_settings(form(**EXAMPLE_TEXT), limits)
    assert values["size"] == 64 and values["alpha"] == 0.25 and values["style_weights"] == (1.0, 3.0)
    assert values["preset"] == "d2l" and values["init"] == "noise" and values["crop"] is True
    assert values["feature_transform"] == "wct"
    with pytest.raises(SettingsError, match="size 1024 is out of range"):
        parse_settings(form(size="1024"), limits)  # the studio's own limit, below the library's
    with pytest.raises(SettingsError, match="unknown init 'gaussian'"):
        parse_settings(form(init="gaussian"), limits)  # the studio offers fewer starts than the CLI
    with pytest.raises(SettingsError, match="unknown form field 'tile_size'"):
        parse_settings(form(tile_size="256"), limits)  # not a studio setting


def test_one_declaration_one_message_for_preserve_color() -> None:
    messages = set()
    declarations = {cls: [s for s in settings_of(cls) if s.name == "preserve_color"] for cls in (StylizeSettings, GatysSettings)}
    assert declarations[StylizeSettings] == declarations[GatysSettings]
    for cls in declarations:
        with pytest.raises(SettingsError) as refused:
            cls(preserve_color="sepia")
        messages.add(str(refused.value))
    with pytest.raises(SettingsError) as refused:
        parse_settings(form(preserve_color="sepia"), Limits())
    messages.add(str(refused.value))
    assert messages == {"unknown preserve_color 'sepia': preserve_color must be one of none, luminance, match"}


def test_settings_round_trip_through_their_records() -> None:
    stylize = StylizeSettings(alpha=0.3, style_weights=(2.0, 1.0), preserve_color="match", content_size=96,
                              style_size=None, tile=True, tile_size=384)
    assert StylizeSettings.from_dict(stylize.to_dict()) == stylize
    # An output's whole metadata: the other keys are left.
    assert StylizeSettings.from_dict({**stylize.to_dict(), "painterly.method": "stylize", "seed": 3}) == stylize
    gatys = GatysSettings(style_weight=3.0, style_layers=("relu1_1", "relu2_1"), style_layer_weights=(1.0, 0.5),
                          pixel_scale=(1.0, 2.0, 3.0), preserve_color="luminance", init="content")
    assert GatysSettings.from_dict(gatys.to_dict()) == gatys
    for cls in (StylizeSettings, GatysSettings, TrainConfig):  # every declared setting is recorded
        assert {setting.name for setting in settings_of(cls)} <= set(cls().to_dict())
