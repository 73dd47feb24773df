"""The blocks users copy run as written, wherever they live: docs/bring-your-own.md's bash
blocks, in order, from a copy of the repository's examples/ (published models read in place);
every example file a page shows is the file in examples/; and the README's bash block (its
five-minute plugin sampler) is the first of them, so it runs too. The README's `sh` blocks are
commands whose behaviour the CLI tests cover."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.paths import REPO_ROOT
from bench.store import read_rows

pytest.importorskip("diffusers")
PAGE = REPO_ROOT / "docs" / "bring-your-own.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```$", re.S | re.M)


def section_blocks(path: Path = PAGE) -> list[tuple[str, str]]:
    return BLOCK.findall(path.read_text())


def test_the_readmes_runnable_block_is_the_first_one_run_here():
    readme = [text for language, text in section_blocks(REPO_ROOT / "README.md") if language == "bash"]
    page = [text for language, text in section_blocks() if language == "bash"]
    assert readme == page[:1]


def shown_files() -> list[tuple[str, str]]:
    """(path, text) of every block that opens with `# examples/<file>`."""
    found = []
    for _, text in section_blocks():
        first = text.splitlines()[0]
        match = re.match(r"# (examples/[\w.-]+)", first)
        if match:
            found.append((match.group(1), text))
    return found


def test_the_section_shows_each_example_suite():
    assert {path for path, _ in shown_files()} == {
        "examples/byo-plugin.toml", "examples/byo-diffusers.toml", "examples/byo-safetensors.toml"}


@pytest.mark.parametrize("path, text", shown_files(), ids=[p for p, _ in shown_files()])
def test_a_file_shown_is_the_file_in_examples(path, text):
    assert (REPO_ROOT / path).read_text() == text


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A folder laid out like the repository for the blocks: examples/ copied, the published
    results linked (read only), its own cache; then every bash block run in order."""
    root = tmp_path_factory.mktemp("byo")
    shutil.copytree(REPO_ROOT / "examples", root / "examples")
    (root / "results").mkdir()
    (root / "results" / "published").symlink_to(REPO_ROOT / "results" / "published")
    env = {**os.environ, "DIFFBENCH_CACHE": str(root / "cache"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    outputs = []
    for language, text in section_blocks():
        if language != "bash":
            continue
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", text], cwd=root, env=env,
                              capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"block failed:\n{text}\n{done.stdout}\n{done.stderr}"
        outputs.append(done.stdout)
    return root, outputs


def rows_of(results: Path, suite: str) -> list[dict]:
    rows, problems = read_rows(results / suite / "rows.jsonl")
    assert not problems
    return rows


def test_the_plugin_block_lists_and_runs_the_plugin(workspace):
    root, outputs = workspace
    assert re.search(r"dpmpp-2m\s.*file ", outputs[0])
    methods = {r["method"]: r["status"] for r in rows_of(root / "results", "byo-plugin")}
    assert methods["dpmpp-2m"] == methods["diffusers:DPMSolverMultistepScheduler"] == "ok"


def test_the_diffusers_block_runs_the_saved_unet(workspace):
    root, _ = workspace
    rows = rows_of(root / "results", "byo-diffusers")
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert all(r["model"]["recipe"] == "diffusers:my-pipeline" and r["model"]["checkpoint_sha256"] for r in rows)


def test_the_safetensors_block_reproduces_the_published_quick_row(workspace):
    root, _ = workspace
    [row] = rows_of(root / "results", "byo-safetensors")
    published = [r for r in rows_of(REPO_ROOT / "results" / "published", "quick")
                 if r["method"] == "ddim" and r["steps"] == 10]
    assert row["protocol_fingerprint"] == published[0]["protocol_fingerprint"]
    # Equal on the AVX2 kind of CPU that made the published rows; another kind's kernels round
    # the last bits differently (1e-6 relative seen on AVX-512), a different model far more.
    assert row["metrics"]["fid"]["value"] == pytest.approx(published[0]["metrics"]["fid"]["value"],
                                                           rel=1e-5)


def test_the_score_block_appends_a_row_ranked_with_the_plugin_suite(workspace):
    root, outputs = workspace
    rows = rows_of(root / "results", "byo-plugin")
    [scored] = [r for r in rows if r["source"] == "score"]
    assert scored["label"] == "real test digits" and scored["nfe"] is None
    assert {r["protocol_fingerprint"] for r in rows} == {scored["protocol_fingerprint"]}
    assert "kid=" in outputs[-1] and "ranked with 2 stored row(s)" in outputs[-1]
    board = (root / "reports" / "byo-plugin" / "leaderboard.md").read_text()
    assert "real test digits" in board and "samples made outside diffbench" in board
    assert scored["samples"]["count"] == 400 and scored["n_samples"] == 400
