"""recipes.config against recipes/base.yaml: every default has a validation rule, a missing rule
is a one-line error naming the key, and the profile names come from base.yaml."""
from __future__ import annotations

import pytest
import yaml

from recipes import config
from recipes.errors import SepbenchError


def _leaves(section: dict, prefix: str = "") -> set[str]:
    """Dotted keys of the settings in `section` (model: keys are the builder's, checked apart)."""
    out = set()
    for key, value in section.items():
        if key == "model":
            continue
        out |= _leaves(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key}
    return out


@pytest.fixture
def planted(tmp_path, monkeypatch):
    """Write a base.yaml with `edit` applied, point recipes.config at it, and read it afresh."""
    def plant(edit) -> None:
        base = yaml.safe_load(config.BASE.read_text())
        edit(base)
        path = tmp_path / "base.yaml"
        path.write_text(yaml.safe_dump(base))
        monkeypatch.setattr(config, "BASE", path)
        config._base.cache_clear()
    yield plant
    config._base.cache_clear()  # the next caller reads the real base.yaml again (monkeypatch restored BASE)


def test_every_key_of_base_yaml_and_its_profiles_has_a_rule():
    base = yaml.safe_load(config.BASE.read_text())
    keys = _leaves({k: v for k, v in base.items() if k != "profiles"})
    for name, over in base["profiles"].items():
        assert _leaves(over or {}) <= keys, f"profile {name} sets keys base.yaml does not define"
    assert sorted(keys - set(config.RULES)) == []
    assert sorted(set(config.RULES) - keys) == [], "rules for keys base.yaml no longer has"


def test_profiles_are_read_from_base_yaml():
    assert config.PROFILES == tuple(yaml.safe_load(config.BASE.read_text())["profiles"])


@pytest.mark.parametrize("edit,key", [
    (lambda b: b["data"].update(new_knob=1), "data.new_knob"),
    (lambda b: b.update(new_section={"depth": 2}), "new_section.depth"),
    (lambda b: b["profiles"]["gpu"]["trainer"].update(new_flag=True), "trainer.new_flag"),
])
def test_a_default_without_a_rule_is_a_clear_error(planted, edit, key):
    planted(edit)
    with pytest.raises(SepbenchError, match=rf"no validation rule .* {key.replace('.', '[.]')}"):
        config._base()
    with pytest.raises(SepbenchError, match=key.replace(".", "[.]")):
        config.resolve("conv_tasnet", "smoke")


@pytest.mark.parametrize("override,message", [
    ("data=3", "data=3: not a setting"),
    ("seed.x=1", "seed.x=1: not a setting"),
    ("model=3", "model=3: must be a section"),
])
def test_a_section_and_a_value_mixed_up_are_clear_errors(override, message):
    with pytest.raises(SepbenchError, match=message.replace(".", "[.]")):
        config.resolve("conv_tasnet", "smoke", [override])
