"""Every file under NODECERT_HOME is private: 0600 files in a 0700 home (issue 12).

The ledger says who owns which node; SQLite's ``-wal`` and ``-shm`` hold the same rows.
"""

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from nodecert.bootstrap import build_service
from nodecert.core.config import Settings
from nodecert.core.errors import ConfigurationError
from nodecert.support.files import secure_home
from tests.kit import issue


def _modes(home: Path) -> dict[str, int]:
    return {
        str(path.relative_to(home)): stat.S_IMODE(path.stat().st_mode)
        for path in home.rglob("*")
        if path.is_file()
    }


def test_every_file_under_the_home_is_0600_and_the_home_0700(tmp_path):
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    home.chmod(0o755)  # An existing home, as a package or an admin made it.
    previous = os.umask(0o022)  # The usual umask: files would be 0644.
    try:
        service = build_service(Settings(home=home))
        issue(service.authority, "alice", "n1", admin=service.administration)
        modes = _modes(home)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert any(name.endswith("-wal") for name in modes), modes
    assert any(name.endswith("-shm") for name in modes), modes
    loose = {name: oct(mode) for name, mode in modes.items() if mode & 0o077}
    assert loose == {}
    for directory in (p for p in home.rglob("*") if p.is_dir()):
        assert stat.S_IMODE(directory.stat().st_mode) & 0o077 == 0, directory


def test_existing_loose_ledger_files_are_tightened(tmp_path):
    home = tmp_path / "home"
    build_service(Settings(home=home))
    for path in home.rglob("*"):
        if path.is_file():
            path.chmod(0o644)
    build_service(Settings(home=home))
    ledgers = {n: m for n, m in _modes(home).items() if ".db" in n}
    assert ledgers
    assert all(mode & 0o077 == 0 for mode in ledgers.values()), ledgers


def test_a_home_that_is_a_file_is_refused(tmp_path):
    home = tmp_path / "home"
    home.write_text("")
    with pytest.raises(ConfigurationError, match="not a directory"):
        secure_home(home)


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root, to run the check as a user that does not own the home",
)
def test_a_loose_home_that_cannot_be_tightened_refuses_to_start():
    parent = Path(tempfile.mkdtemp(prefix="nodecert-home-"))  # pytest's tmp_path is 0700.
    parent.chmod(0o755)
    home = parent / "home"
    home.mkdir()
    home.chmod(0o777)  # Owned by root, writable by all: nobody cannot chmod it.
    code = (
        "import sys; from pathlib import Path; from nodecert.support.files import secure_home;"
        "from nodecert.core.errors import ConfigurationError\n"
        "try:\n    secure_home(Path(sys.argv[1]))\n"
        "except ConfigurationError as e:\n    print(e.detail); sys.exit(3)\n"
    )
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    done = subprocess.run(
        [*nobody, sys.executable, "-c", code, str(home)],
        capture_output=True,
        text=True,
        check=False,
        cwd=str(Path(__file__).parents[2]),
    )
    assert done.returncode == 3, done.stderr
    assert "NODECERT_HOME" in done.stdout
    assert "0777" in done.stdout
    assert "chmod 700" in done.stdout
    assert stat.S_IMODE(home.stat().st_mode) == 0o777
    shutil.rmtree(parent)
