"""What goes into the real-speech sources: the Debian packages, the sounds taken from each and
their kinds, the file lengths; read from the packages' own file lists (`dpkg-query -L`)."""
from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import recipes.audio
import recipes.folder

SPEAKERS = [  # (speaker, language, package, folder inside /usr/share/asterisk/sounds)
    ("allison_smith", "en", "asterisk-core-sounds-en-wav", "en_US_f_Allison"),
    ("allison_smith", "es", "asterisk-core-sounds-es-wav", "es_MX_f_Allison"),
    ("june_wallack", "fr", "asterisk-core-sounds-fr-wav", "fr_CA_f_June"),
    ("carlo_flora", "it", "asterisk-core-sounds-it-wav", "it_IT_m_Carlo"),
    ("ivrvoice_ru", "ru", "asterisk-core-sounds-ru-wav", "ru_RU_f_IvrvoiceRU"),
    ("paola_dal_zot", "it", "asterisk-prompt-it-menardi-wav", "it_IT_f_Menardi"),
    ("armelle_desjardins", "fr", "asterisk-prompt-fr-armelle", "fr"),
    ("july_jimenez", "es", "asterisk-prompt-es-co", "es"),
]
NOT_SPEECH = re.compile(r"(^|/)(silence/|beep|beeperr|[a-z]+-2tone|tt-monkeys\.)")
BABBLE_PACKAGE = "ktuberling-data"
OPENSFX_PACKAGE = "openttd-opensfx"
LINCITY_PACKAGE = "lincity-ng-data"
MOH_PACKAGE = "asterisk-moh-opsound-wav"
XMOTO_PACKAGE = "xmoto-data"
PACKAGES = sorted({s[2] for s in SPEAKERS} | {BABBLE_PACKAGE, OPENSFX_PACKAGE, LINCITY_PACKAGE, MOH_PACKAGE, XMOTO_PACKAGE})

# OpenSFX sound name (its first words) -> kind. Sounds not listed (made from scratch, Toyland
# cartoon mixes, "Unused") are left out.
OPENSFX_KINDS = {
    "vehicles": ["Steam train station departure", "Steam engine going in tunnel", "Ship horn", "Ferry horn",
                 "Propeller plane start", "Early jet take off", "Diesel/electric train", "Level crossing",
                 "Road vehicle breakdown", "Train/ship breakdown", "Crash", "Big crash", "Helicopter",
                 "Truck/old bus start", "Modern bus start", "Old bus start", "Modern car horn",
                 "Mach 1+ Jet take off", "Modern jet take off", "Maglev train", "Monorail train"],
    "machines": ["Mining machinery", "Electric sparking", "Jackhammer", "Building bridge", "Sawmill",
                 "Lumber mill"],
    "nature": ["Sheep", "Cow", "Horse", "Wind", "Heavy wind", "Tropical: Bird", "Tropical: Lion",
               "Tropical: Monkeys"],
    "city": ["Applause"],
}
# LinCity-NG sound (the name's first capitalised word) -> kind. Left out: Click, Window* (UI
# sounds), Health (mostly silence and monitor beeps), Substation (clean tonal sweeps: maybe synthetic).
# Pieces group by name without the number (Farm1-3); names that share audio (found by band-passed
# cross-correlation of all pairs; identical files are dropped by Unique) group together.
LINCITY_SHARED = {"TraficHigh": "Trafic", "TraficLow": "Trafic"}
LINCITY_KINDS = {
    "machines": ["Blacksmith", "Build", "Coal", "Industry", "Mill", "Ore", "Pottery", "Power", "Raze",
                 "Recycle", "Tip", "Wind"],
    "vehicles": ["Dirt", "Rail", "Trafic", "Harbor", "Rocket"],
    "nature": ["Farm", "Organic", "Green", "Parkland", "Water", "Fire"],
    "city": ["Commune", "Market", "Residential", "School", "Shanty", "Sports", "University", "Monument"],
}
MIXED_RATE = 16000
SPEECH_SECONDS = (20.0, 40.0)
NOISE_SECONDS = (8.0, 14.0)
BABBLE_SECONDS = (15.0, 25.0)
MIN_SECONDS = 4.0


def package_files(package: str) -> list[str]:
    out = subprocess.run(["dpkg-query", "-L", package], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"error: package {package} is not installed ({out.stderr.strip()})")
    return sorted(p for p in out.stdout.splitlines() if os.path.isfile(p) and not os.path.islink(p))


# The files whose code decides the sources' content (recipes': the resampler and the FLAC
# writer): a change to any of them rebuilds the sources.
CODE = [*sorted(Path(__file__).parent.glob("*.py")), Path(__file__).parents[1] / "real_dev_sources.py",
        Path(recipes.audio.__file__), Path(recipes.folder.__file__)]


def stamp(seed: int) -> str:
    """What the sources depend on: make_real_dev.sh rebuilds them when this changes."""
    versions = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${Version}\n", *PACKAGES],
                              capture_output=True, text=True).stdout
    script = hashlib.sha256(b"".join(path.read_bytes() for path in CODE)).hexdigest()[:16]
    return f"seed {seed}\nscript {script}\n{versions}"
