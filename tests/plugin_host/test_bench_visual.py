"""The visual prompt's held-out benchmark on a small folder of mixtures and the small randomised model."""
import json

import numpy as np
import soundfile

from samstream.plugin_host.bench_visual import CONDITIONS, main
from tests.models.test_visual import bursts
from tests.plugin_host.test_separate import model_dir  # noqa: F401 (a fixture)

RATE = 48000


def mixture_folder(folder):
    """Two protocol rows: target + interferer bursts, their mixture and references, in F/index.jsonl."""
    rng = np.random.default_rng(4)
    rows = []
    for index, (target_class, caption) in enumerate([("speech", "a man speaking"), ("drums", "drums")]):
        target, interferer = bursts(rng)[:3 * RATE], bursts(rng)[:3 * RATE]
        names = {part: f"{index:04d}_{target_class}.{part}.flac" for part in ("mixture", "target", "interferer")}
        for part, signal in (("mixture", target + interferer), ("target", target), ("interferer", interferer)):
            soundfile.write(folder / names[part], signal, RATE)
        rows.append({**names, "target_class": target_class, "interferer_class": "noise", "caption": caption})
    (folder / "index.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder


def test_the_bench_reports_each_condition_and_the_contrasts(tmp_path, model_dir, capsys):  # noqa: F811
    folder = mixture_folder(tmp_path)
    out = tmp_path / "out"
    assert main(["--folder", str(folder), "--model", str(model_dir), "--per-class", "0", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["mixtures"] == 2 and set(results["per_class"]) == {"speech", "drums"}
    assert not results["visual_trained"]
    for row in results["rows"]:
        assert all(np.isfinite(row[name]) for name in CONDITIONS)
    # The randomised model's visual gate is open: the box changes the result, the wrong box differently.
    mean = results["mean"]
    assert mean["text+visual - text"] != 0.0 and mean["right box - wrong box"] != 0.0
    report = (out / "report.md").read_text()
    assert "not trained with visual prompts" in report and "| **mean** |" in report
    assert "right box - wrong box" in capsys.readouterr().out


def test_a_missing_folder_is_one_line(tmp_path, capsys):
    assert main(["--folder", str(tmp_path / "none"), "--out", str(tmp_path / "out")]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "no " in error[0] and not (tmp_path / "out").exists()
