"""`samstream bench --live --device D`: cuda without CUDA stops with the reason; the CPU gives figures."""
import json

import pytest

from samstream.plugin_host.bench_streams import run_stream_bench
from samstream.plugin_host.cli import main
from samstream.stream.gpu_engine import cuda_unavailable_reason

from ..models.batched_model import export_tiny_model


@pytest.mark.skipif(cuda_unavailable_reason() is None, reason="CUDA is here")
def test_bench_on_cuda_without_cuda_ends_with_one_line_naming_the_reason(tmp_path, capsys):
    assert main(["bench", "--live", "--device", "cuda", "--out", str(tmp_path / "out")]) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("samstream bench: device cuda: ")
    assert not (tmp_path / "out").exists()


def test_device_without_live_is_refused(capsys):
    assert main(["bench", "--device", "cpu"]) == 1
    assert "--device goes with --live" in capsys.readouterr().err


def test_the_cpu_batched_bench_reports_every_batch_up_to_the_first_whose_median_misses(tmp_path):
    serving = export_tiny_model(tmp_path / "model")
    lines = []
    results = run_stream_bench(str(tmp_path / "out"), "cpu", max_streams=4, model=str(serving), seconds=0.05,
                               say=lines.append)
    written = json.loads((tmp_path / "out" / "results.json").read_text())
    assert written == results and results["device"] == "cpu"
    counts = [batch["streams"] for batch in results["batches"]]
    assert counts[0] == 1 and counts == [1, 2, 4][:len(counts)]
    assert all(batch["hop_ms_p50"] < batch["hop_budget_ms"] for batch in results["batches"][:-1])
    assert results["max_streams_by_median"] >= results["max_streams_that_fit"]
    assert results["max_streams_that_fit"] == max([b["streams"] for b in results["batches"] if b["fits"]], default=0)
    assert all(0 < batch["hop_ms_p50"] <= batch["hop_ms_p99"] <= batch["hop_ms_max"] for batch in results["batches"])
    assert "Streams that fit" in (tmp_path / "out" / "report.md").read_text() and lines
