"""What the studio's job form takes, read from the settings' declarations.

The form's settings are the fields marked ``studio=True`` (:func:`painterly.options.option`) of
:class:`JobFields` (the job's own: method, preset, seed), :class:`painterly.gatys.GatysSettings`
(optimisation's) and :class:`painterly.adain.StylizeSettings` (AdaIN's): the parser
(:func:`parse_settings`), the page's defaults (:data:`DEFAULTS`) and the API's schema
(:mod:`.openapi`) all come from those declarations, so a setting marked for the studio is
taken, described and passed on with no other change. :class:`Limits` is what one client may
ask of the studio.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from starlette.datastructures import FormData

from ..adain import DEFAULT_STYLE_SIZE, StylizeSettings
from ..errors import SettingsError
from ..gatys import DEFAULT_PRESET, PRESETS, GatysSettings
from ..images import check_size
from ..options import Setting, option, parse_text, studio_settings
from .jobs import METHODS

#: Seeds go to torch.manual_seed: whole numbers up to this.
SEED_MAX = 2**63 - 1


@dataclass(frozen=True)
class JobFields:
    """The job's own settings, beside the methods': which method, and optimisation's preset."""

    method: str = option("optimize", choices=METHODS, studio=True, studio_default="optimize",
                         help="optimize (Gatys et al.) or stylize (AdaIN, only when GET /api/info says it is available)")
    preset: str = option(DEFAULT_PRESET, choices=tuple(PRESETS), studio=True, studio_default=DEFAULT_PRESET,
                         help="optimize only: the recipe the settings start from (see GET /api/info)")
    seed: int = option(0, minimum=0, maximum=SEED_MAX, studio=True, studio_default=0,
                       help="optimize's seed; stylize's for random encoder weights")


#: Whose settings each method takes from the form, besides :class:`JobFields`.
METHOD_SETTINGS: dict[str, type] = {"optimize": GatysSettings, "stylize": StylizeSettings}


def _studio_fields() -> dict[str, tuple[Setting, tuple[str, ...]]]:
    """Every studio setting by name, with the methods that take it (the job's own: all)."""
    found: dict[str, tuple[Setting, tuple[str, ...]]] = {}
    for setting in studio_settings(JobFields):
        found[setting.name] = (setting, METHODS)
    for method, cls in METHOD_SETTINGS.items():
        for setting in studio_settings(cls):
            known = found.get(setting.name)
            found[setting.name] = (known[0] if known else setting, (known[1] if known else ()) + (method,))
    # Both take these: AdaIN's output size is the form's size, optimisation's style weights a
    # keyword of its own (GatysSettings has none).
    for name in ("size", "style_weights"):
        found[name] = (found[name][0], METHODS)
    return found


#: The studio's settings by name, each with the methods that use it.
STUDIO_FIELDS = _studio_fields()
#: The form fields a job may have; anything else is refused (a misspelt setting must not be ignored).
FORM_FIELDS = ("content", "style", *STUDIO_FIELDS)
#: What the page starts with. Optimisation starts from the content image here (the presets
#: mostly start from noise), so that the live preview means something from the first iteration.
DEFAULTS: dict[str, Any] = {name: setting.option.studio_default for name, (setting, _) in STUDIO_FIELDS.items()
                            if setting.option.studio_default is not None}


@dataclass(frozen=True)
class Limits:
    """What one client may ask of the studio."""

    max_upload_bytes: int = 25 * 2**20  # the whole request: content and style files together
    max_size: int = 1024  # longer side of the output, pixels
    max_iterations: int = 1000
    max_styles: int = 4
    queue_size: int = 4  # jobs waiting behind the running one
    max_jobs: int = 50  # finished jobs kept (with their results)
    job_ttl: float = 3600.0  # seconds a finished job is kept

    def __post_init__(self) -> None:
        check_size(self.max_size, what="max_size")
        for name in ("max_upload_bytes", "max_iterations", "max_styles", "max_jobs"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name} must be at least 1, got {getattr(self, name)}")

    @property
    def max_decode_pixels(self) -> int:
        """The most pixels an upload's header may declare: four times the largest side used
        (the output, or AdaIN's style size) on each side. JPEGs count after a reduced decode."""
        return (4 * max(self.max_size, DEFAULT_STYLE_SIZE)) ** 2

    def maximum(self, setting: Setting) -> float | None:
        """The studio's own upper bound on ``setting`` (its ``studio_maximum`` limit), if any."""
        limit = setting.option.studio_maximum
        return getattr(self, limit) if limit else None

    def defaults(self) -> dict[str, Any]:
        """:data:`DEFAULTS`, brought within these limits."""
        capped = {name: min(DEFAULTS[name], self.maximum(setting)) for name, (setting, _) in STUDIO_FIELDS.items()
                  if name in DEFAULTS and self.maximum(setting) is not None}
        return DEFAULTS | capped


def text_field(form: FormData, name: str) -> str | None:
    """A form field's text, stripped; None when absent or empty (a file is refused)."""
    value = form.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise SettingsError(f"{name} must be a form field, not a file")
    return value.strip()


def check_fields(form: FormData) -> None:
    """Refuse a field not in :data:`FORM_FIELDS`."""
    unknown = sorted(set(form.keys()) - set(FORM_FIELDS))
    if unknown:
        raise SettingsError(f"unknown form field {', '.join(repr(name[:40]) for name in unknown[:5])}: "
                            f"the studio takes {', '.join(FORM_FIELDS)}")


def parse_settings(form: FormData, limits: Limits) -> dict[str, Any]:
    """Every studio setting of the form, parsed and checked against its declaration and the
    studio's limits (:class:`SettingsError`); one left out is the page's default, or None where
    there is none (then the method's own, e.g. the preset's)."""
    check_fields(form)
    defaults = limits.defaults()
    values = {}
    for name, (setting, _) in STUDIO_FIELDS.items():
        text = text_field(form, name)
        values[name] = defaults.get(name) if text is None else parse_text(setting, text, maximum=limits.maximum(setting))
    return values


def method_settings(method: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """The values of ``method``'s own studio settings (the keywords it is called with)."""
    return {setting.name: values[setting.name] for setting in studio_settings(METHOD_SETTINGS[method])}
