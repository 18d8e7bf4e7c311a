"""The hashed locks that scripts/bootstrap installs agree with pyproject.toml (docs/security.md, "Reproducible
installs"). Offline: it reads the files, it does not resolve anything. When one of these fails after a change to
pyproject.toml, run scripts/lock and commit the locks with the change."""

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
APP_LOCK = ROOT / "requirements" / "app.txt"
TEST_LOCK = ROOT / "requirements" / "test.txt"
BENCH_LOCK = ROOT / "bench" / "requirements.txt"
# Which lock scripts/bootstrap installs for which extras of pyproject.toml.
LOCKS = {"app": (APP_LOCK, ()), "test": (TEST_LOCK, ("test",))}

# The last release of each package that had a security fix after it (docs/security.md lists the advisories).
# pyproject.toml's floors must keep every one of them out, whatever else changes there.
KNOWN_VULNERABLE = {
    "flask": "3.1.2",
    "werkzeug": "3.1.8",
    "jinja2": "3.1.5",
    "pillow": "12.2.0",
    "gunicorn": "26.0.0",
    "cryptography": "49.0.0",
    "requests": "2.32.3",
    "urllib3": "2.6.2",
    "idna": "3.6",
    "certifi": "2024.6.2",
    "setuptools": "78.1.0",
    "pip": "25.2",
}


@dataclass(frozen=True)
class Pin:
    name: str
    version: Version
    marker: Marker | None
    hashes: tuple[str, ...]
    from_pyproject: bool

    def applies_here(self) -> bool:
        return self.marker is None or self.marker.evaluate()


def read_lock(path: Path) -> list[Pin]:
    """The entries of a lock written by ``uv pip compile --generate-hashes``: one per requirement, its
    continuation lines joined, with uv's ``# via`` annotation telling whether pyproject.toml asked for it."""
    pins = []
    for block in re.split(r"\n(?=\S)", path.read_text(encoding="utf-8")):
        if block.startswith("#") or not block.strip():
            continue
        logical, _, annotation = block.replace("\\\n", " ").partition("#")
        requirement = Requirement(logical.partition("--hash=")[0].strip())
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", f"{path.name}: {requirement} is not pinned with =="
        pins.append(Pin(
            name=canonicalize_name(requirement.name),
            version=Version(specifier.version),
            marker=requirement.marker,
            hashes=tuple(re.findall(r"--hash=(sha256:[0-9a-f]{64})", logical)),
            from_pyproject="dingqiao (pyproject.toml" in annotation,
        ))
    return pins


def pins_here(path: Path) -> dict[str, Pin]:
    """The one pin per package that pip installs on this machine (a universal lock may hold a package twice,
    for different Pythons)."""
    chosen: dict[str, Pin] = {}
    for pin in read_lock(path):
        if pin.applies_here():
            assert pin.name not in chosen, f"{path.name} pins {pin.name} twice for this machine"
            chosen[pin.name] = pin
    return chosen


def pyproject_requirements(*, extras: tuple[str, ...] = ()) -> list[Requirement]:
    texts = list(PYPROJECT["project"]["dependencies"]) + list(PYPROJECT["dependency-groups"]["bootstrap"])
    for extra in extras:
        texts += PYPROJECT["project"]["optional-dependencies"][extra]
    return [Requirement(text) for text in texts]


@pytest.mark.parametrize("lock_name", LOCKS)
def test_every_requirement_of_pyproject_is_pinned_in_its_lock_within_its_range(lock_name):
    path, extras = LOCKS[lock_name]
    pins = pins_here(path)
    for requirement in pyproject_requirements(extras=extras):
        pin = pins.get(canonicalize_name(requirement.name))
        assert pin is not None, f"{requirement} is missing from {path.name}: run scripts/lock"
        assert requirement.specifier.contains(pin.version, prereleases=True), (
            f"{path.name} pins {pin.name}=={pin.version}, outside {requirement}: run scripts/lock")


@pytest.mark.parametrize("lock_name", LOCKS)
def test_the_lock_asks_for_nothing_that_pyproject_no_longer_names(lock_name):
    path, extras = LOCKS[lock_name]
    wanted = {canonicalize_name(requirement.name) for requirement in pyproject_requirements(extras=extras)}
    stale = {pin.name for pin in read_lock(path) if pin.from_pyproject} - wanted
    assert not stale, f"{path.name} still pins {sorted(stale)} for pyproject.toml: run scripts/lock"


@pytest.mark.parametrize("path", [APP_LOCK, TEST_LOCK, BENCH_LOCK], ids=lambda path: path.name)
def test_every_pin_carries_sha256_hashes(path):
    """pip --require-hashes refuses a lock with a single unhashed line, so this is what bootstrap relies on."""
    pins = read_lock(path)
    assert pins
    unhashed = [pin.name for pin in pins if not pin.hashes]
    assert not unhashed, f"{path.name}: no --hash for {unhashed}"


def test_the_locks_agree_on_every_package_they_share():
    """bootstrap without extras (the demo, a deployment) installs the same versions the tests ran with, and the
    benchmarks' tools do not move a package of the app when installed into the same .venv."""
    test_pins = pins_here(TEST_LOCK)
    for path in (APP_LOCK, BENCH_LOCK):
        for name, pin in pins_here(path).items():
            if path == APP_LOCK:
                assert name in test_pins, f"{name} is in {path.name} but not in {TEST_LOCK.name}"
            if name in test_pins:
                assert pin.version == test_pins[name].version, (
                    f"{name}: {pin.version} in {path.name}, {test_pins[name].version} in {TEST_LOCK.name}")


def test_the_locked_setuptools_can_build_the_project():
    """bootstrap builds the project with --no-build-isolation, that is with the locked setuptools."""
    pins = pins_here(APP_LOCK)
    for text in PYPROJECT["build-system"]["requires"]:
        requirement = Requirement(text)
        pin = pins.get(canonicalize_name(requirement.name))
        assert pin is not None and requirement.specifier.contains(pin.version), (
            f"{APP_LOCK.name} has no {requirement} to build with")


@pytest.mark.parametrize("name, vulnerable", KNOWN_VULNERABLE.items())
def test_the_floors_keep_out_releases_with_known_security_holes(name, vulnerable):
    declared = pyproject_requirements() + [Requirement(text) for text in PYPROJECT["build-system"]["requires"]]
    ranges = [requirement.specifier for requirement in declared if canonicalize_name(requirement.name) == name]
    assert ranges, f"pyproject.toml sets no floor for {name}"
    assert all(not specifier.contains(vulnerable, prereleases=True) for specifier in ranges), (
        f"pyproject.toml admits {name} {vulnerable}, which has a known security hole")
