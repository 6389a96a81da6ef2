"""The slurm launcher's settings: benchmark/launch/slurm.yaml, then a --launcher-config file,
then the command line's --partition/--account/--slurm-time. Unknown keys and wrong types are
errors, so a typo never submits to the default partition without a word."""
from __future__ import annotations

from pathlib import Path

import yaml

from recipes.errors import SepbenchError

DEFAULTS = Path(__file__).with_name("slurm.yaml")
_OPTIONAL_TEXT = ("partition", "account", "qos")
_COUNTS = {"train_time_min": 1, "budget_margin_min": 0, "evaluate_cpus": 1, "evaluate_gpus": 0,
           "evaluate_time_min": 1, "evaluate_shards": 1,
           "signal_delay_s": 0}


def _read(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SepbenchError(f"{path}: cannot read the launcher config ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise SepbenchError(f"{path}: the launcher config must be a mapping of settings")
    return data


def _check(settings: dict, where: str) -> None:
    def bad(key, what):
        raise SepbenchError(f"{where}: {key}={settings[key]!r}: must be {what}")
    for key in _OPTIONAL_TEXT:
        if settings[key] is not None and not (isinstance(settings[key], str) and settings[key]):
            bad(key, "a name, or null")
    for key, low in _COUNTS.items():
        v = settings[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            bad(key, f"an integer >= {low}")
    v = settings["mem_gb"]
    if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0):
        bad("mem_gb", "a positive number of GB, or null")
    v = settings["poll_seconds"]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
        bad("poll_seconds", "a positive number of seconds")
    if not isinstance(settings["setup"], list) or not all(isinstance(x, str) for x in settings["setup"]):
        bad("setup", "a list of shell lines")


def load(config: str | Path | None = None, **overrides) -> dict:
    """The settings; `overrides` are command-line values, None where not given."""
    settings = _read(DEFAULTS)
    sources = [(DEFAULTS, settings)]
    if config is not None:
        own = _read(Path(config))
        unknown = sorted(set(own) - set(settings))
        if unknown:
            raise SepbenchError(f"{config}: unknown launcher setting(s) {', '.join(unknown)}; "
                                f"known: {', '.join(settings)}")
        settings = {**settings, **own}
        sources.append((Path(config), own))
    given = {k: v for k, v in overrides.items() if v is not None}
    settings.update(given)
    where = " and ".join(str(p) for p, _ in sources) + (" and the command line" if given else "")
    _check(settings, where)
    return settings
