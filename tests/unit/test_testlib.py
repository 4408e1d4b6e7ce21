"""scripts/testlib.sh's need_debian, which the distributed and UI suites call at once in CI: with a
stand-in apt-get (a real install is neither wanted nor reachable here) and a stand-in `id` for the user."""

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

APT_GET = """#!/bin/bash
echo "$*" >> "$APT_LOG"
if [ "$1" = install ]; then  # as slow as a real one, then the command is there
  sleep 1
  printf '#!/bin/sh\\n' > "$BIN/fakecmd" && chmod +x "$BIN/fakecmd"
fi
"""


def _stand_ins(tmp_path: Path, uid: int) -> dict:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "apt-get").write_text(APT_GET)
    (bin_dir / "id").write_text(f"#!/bin/sh\necho {uid}\n")
    for tool in ("apt-get", "id"):
        (bin_dir / tool).chmod(0o755)
    return os.environ | {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "BIN": str(bin_dir),
        "APT_LOG": str(tmp_path / "apt.log"),
        "FRESHREC_APT_LOCK": str(tmp_path / "apt.lock"),
    }


def _need(env: dict, *args: str) -> subprocess.Popen:
    script = f"source {ROOT / 'scripts' / 'testlib.sh'}; need_debian {' '.join(args)}"
    return subprocess.Popen(["bash", "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_suites_needing_one_package_install_it_once(tmp_path):
    """The suite that waited for the lock finds the package installed and does not update or install again."""
    env = _stand_ins(tmp_path, 0)
    first = _need(env, "fakecmd", "fakepkg", "sh", "dash")
    second = _need(env, "fakecmd", "fakepkg")
    outs = [p.communicate(timeout=60) for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], outs
    calls = (tmp_path / "apt.log").read_text().splitlines()
    assert calls == ["update -qq", "install -y -qq fakepkg"]  # sh is there: only the missing package
    assert sum("installing fakepkg" in out for out, _ in outs) == 1


def test_need_debian_does_nothing_when_commands_are_there_and_says_how_when_not_root(tmp_path):
    env = _stand_ins(tmp_path, 1000)
    present = _need(env, "sh", "dash")
    assert present.communicate(timeout=60) == ("", "") and present.returncode == 0
    missing = _need(env, "fakecmd", "fakepkg", "othercmd", "otherpkg")
    _, err = missing.communicate(timeout=60)
    assert missing.returncode == 1
    assert "need fakepkg otherpkg (Debian packages): sudo apt-get install -y fakepkg otherpkg" in err
    assert not (tmp_path / "apt.log").exists()
