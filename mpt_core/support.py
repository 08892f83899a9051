"""Which tasks and presets each backbone family supports, answered from the registries.

A family's kind (dual-encoder or generative) decides its tasks (`Task.backbone_kind`);
its `presets` (or every preset) decide its prompt settings. `build_prompts` refuses
anything else with one error that lists what the family does support; the test matrix
asks `supports` instead of naming pairs.
"""

from __future__ import annotations

from .backbones import FAMILIES
from .errors import ConfigError
from .prompts import PRESETS
from .tasks import TASKS


def family_tasks(family: str) -> list[str]:
    kind = FAMILIES.get(family).kind
    return [name for name in TASKS if TASKS.get(name).backbone_kind == kind]


def family_presets(family: str) -> list[str]:
    allowed = FAMILIES.get(family).presets
    return [name for name in PRESETS if allowed is None or name in allowed]


def supports(family: str, *, task: str | None = None, preset: str | None = None) -> bool:
    """True if `family` runs `task` with `preset` (either may be left out)."""
    return (task is None or task in family_tasks(family)) and (
        preset is None or preset in family_presets(family)
    )


def check_supported(family: str, kind: str, preset: str, task: str, needs: str) -> None:
    """Raise ConfigError unless a backbone of `family` (of `kind`) runs `preset` and the
    task `task`, which needs a backbone of kind `needs`.

    The kinds come from the objects, so unregistered families and tasks are checked too.
    """
    if needs != kind:
        known = family in FAMILIES
        runs = ", ".join(family_tasks(family)) if known else f"the {kind} tasks"
        hosts = ", ".join(f for f in FAMILIES if FAMILIES.get(f).kind == needs) or "(none)"
        raise ConfigError(
            f"task {task!r} needs a {needs} backbone, but {family} is a {kind} backbone; "
            f"{family} runs: {runs}. HINT: {task} runs on {hosts}"
        )
    check_preset(family, preset)


def check_preset(family: str, preset: str) -> None:
    """Raise ConfigError unless `preset` is registered and available on `family`."""
    PRESETS.get(preset)  # an unknown preset lists the known ones
    if family in FAMILIES and preset not in family_presets(family):
        raise ConfigError(
            f"preset {preset!r} is not available on {family}; it supports: "
            f"{', '.join(family_presets(family))}"
        )
