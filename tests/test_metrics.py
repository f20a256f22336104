"""Metric writers: metrics.jsonl lines and the TensorBoard scalars mirrored from them."""

from helpers.events import read_scalars

from jaxrl_reason.training.metrics import MetricWriter, read_metrics


def test_metric_writer_mirrors_numeric_scalars_to_tensorboard(tmp_path):
    writer = MetricWriter(tmp_path, key="round", filename="metrics.jsonl")
    writer.write(0, {"acc": 0.25, "kept": 3, "phase": "base", "ok": True})
    writer.write(1, {"acc": 0.5, "kept": 7, "phase": "round"})
    writer.close()
    assert [(r["round"], r["acc"], r["phase"]) for r in read_metrics(tmp_path)] == [
        (0, 0.25, "base"), (1, 0.5, "round")]
    scalars = read_scalars(tmp_path / "tensorboard" / "metrics")
    assert scalars["acc"] == [(0, 0.25), (1, 0.5)]
    assert scalars["kept"] == [(0, 3.0), (1, 7.0)]
    assert set(scalars) == {"acc", "kept"}  # no strings, booleans, step or time


def test_metric_writer_drops_lines_past_the_restored_step(tmp_path):
    writer = MetricWriter(str(tmp_path))
    for step in (1, 2, 3):
        writer.write(step, {"loss": float(step)})
    writer.close()
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 4, "lo')  # a line cut by a kill mid-write
    MetricWriter(str(tmp_path), resume_step=2).close()
    assert [r["step"] for r in read_metrics(str(tmp_path))] == [1, 2]
    MetricWriter(str(tmp_path), resume_step=None).close()  # no checkpoint: start afresh
    assert read_metrics(str(tmp_path)) == []
