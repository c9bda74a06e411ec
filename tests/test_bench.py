"""bench/bench_step_interleaved.py on a tiny local checkpoint: the tool that compares versions of
the masked forward must train each version's gates exactly as a run of its own would."""

import os
import subprocess
import sys
from pathlib import Path

from conftest import make_model, make_tokenizer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import bench_circuit_depth as depth  # noqa: E402

FORWARD = str(ROOT / "workflow" / "clue" / "circuits" / "masked_forward.py")


def checkpoint(tmp_path):
    words = depth.TEMPLATE.replace("{", " ").replace("}", " ").split() + depth.NAMES + depth.PLACES + \
        [p + "." for p in depth.PLACES] + depth.THINGS + "In the morning,".split()
    tok = make_tokenizer(words)
    model = make_model("gqa", vocab_size=len(tok), layers=2)
    model.save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    return tmp_path / "model"


def run(*args):
    return subprocess.run([sys.executable, str(ROOT / "bench" / "bench_step_interleaved.py"), *args],
                          capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def test_interleaved_versions_train_the_gates_a_run_of_their_own_would(tmp_path):
    """The same forward twice: both rows say their gates equal the first's, which holds only if
    each version draws from its own copy of the random state (interleaved draws from one stream
    would give the second version other gates)."""
    model_dir = checkpoint(tmp_path)
    out = run("--model-dir", str(model_dir), "--forward", FORWARD, FORWARD, "--rounds", "2",
              "--pairs", "3", "--threads", "1")
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [line for line in out.stdout.splitlines() if line.startswith(f"| {FORWARD}")]
    assert len(rows) == 2 and all(row.endswith("| True |") for row in rows), out.stdout
    assert "2 interleaved steps each" in out.stdout


def test_a_missing_forward_file_is_named(tmp_path):
    out = run("--model-dir", str(tmp_path), "--forward", FORWARD, str(tmp_path / "nope.py"))
    assert out.returncode != 0 and f"--forward: no such file: {tmp_path / 'nope.py'}" in out.stderr
