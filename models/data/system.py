"""Debian packages and command-line tools the build needs, installed idempotently.

``ensure_packages`` installs what is missing with apt-get when it can (root, apt-get on
PATH) and otherwise raises :class:`MissingDependency` with one line naming the package
and the command that installs it.
"""
from __future__ import annotations

import os
import shutil
import subprocess

# Debian package -> what the build uses it for.
PACKAGES = {
    "espeak-ng": "speech",
    "fluidsynth": "instruments (renderer)",
    "fluid-soundfont-gm": "instruments (FluidR3_GM.sf2)",
    "hydrogen-drumkits": "drums",
    "sonic-pi-samples": "effects, drums, instruments",
    "lmms-common": "effects, drums, instruments",
    "wesnoth-1.16-data": "effects, ambience",
    "wesnoth-1.16-music": "music beds",
    "supertuxkart-data": "effects, ambience, music beds",
}
TOOLS = {"espeak-ng": "espeak-ng", "fluidsynth": "fluidsynth"}   # tool -> package
SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"


class MissingDependency(OSError):
    """A Debian package or tool that is needed and cannot be installed here."""


def installed(package: str) -> bool:
    if shutil.which("dpkg-query") is None:
        return False
    result = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package],
                            capture_output=True, text=True, check=False)
    return result.returncode == 0 and result.stdout.strip().endswith("installed")


def ensure_packages(packages: list[str], allow_install: bool = True, log=print) -> None:
    """Install the missing ones (apt-get, no recommends); raise MissingDependency if it can't."""
    missing = [p for p in packages if not installed(p)]
    if not missing:
        return
    names = " ".join(missing)
    hint = f"apt-get install --no-install-recommends {names}"
    if not allow_install:
        raise MissingDependency(f"missing Debian package(s) {names}: run {hint}")
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        raise MissingDependency(f"missing Debian package(s) {names} and cannot install them here "
                                f"(needs root and apt-get): run {hint}")
    log(f"installing Debian package(s): {names}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    command = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env, check=False)
        result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    still = [p for p in missing if not installed(p)]
    if result.returncode != 0 or still:
        lines = (result.stderr or result.stdout).strip().splitlines()
        reason = lines[-1] if lines else f"apt-get exit status {result.returncode}"
        raise MissingDependency(f"could not install Debian package(s) {' '.join(still or missing)}: {reason}")


def require_tool(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        package = TOOLS.get(tool, tool)
        raise MissingDependency(f"{tool} not found on PATH: apt-get install {package}")
    return path


def require_file(path: str, package: str) -> str:
    if not os.path.isfile(path):
        raise MissingDependency(f"{path} not found: apt-get install {package}")
    return path
