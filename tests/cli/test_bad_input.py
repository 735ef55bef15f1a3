"""Bad input to the CLI is one clear line and exit 2."""

from __future__ import annotations

from pathlib import Path

from helpers import make_repo, run_casm


def test_a_state_dir_that_is_a_file_is_one_clear_error(tmp_path: Path, casm_env: dict[str, str]) -> None:
    repo = make_repo(tmp_path / "repo", {"a.py": "x = 1\n"})
    (tmp_path / "state").write_text("not a folder")
    env = {**casm_env, "CASM_STATE_DIR": str(tmp_path / "state")}
    proc = run_casm(["run", "--template", "repo-auditor", "--repo", str(repo)], tmp_path, env)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"casm: error: CASM_STATE_DIR={tmp_path / 'state'} is not a directory: "
                                                "point it at a folder CASM may create"]  # fmt: skip
