"""The console and the logs a user reads (issue #14 items 12, 13): the progress display prints
plain lines when stderr is not a terminal and messages on their own line; TensorBoard tags are
not doubled; ``curves.png`` says its curves are smoothed and how."""

import io
import json
import pathlib
import struct

from tensorboardX.proto import event_pb2

from jaxrl_llm import metrics_log, plot


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_prints_plain_lines_off_a_terminal():
    out = io.StringIO()
    p = metrics_log.Progress(total=4, desc="run", file=out, interval=0.0, is_main=True)
    for step in range(4):
        p.update({"reward/mean": 0.25 * step, "loss": 1.0, "other": 5.0})
    p.write("before RL: accuracy=0.500")
    p.close()
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert lines[0].startswith("run step 1/4 (25%)") and "reward=0" in lines[0] and "loss=1" in lines[0]
    assert "other" not in text
    assert lines[3].startswith("run step 4/4 (100%)") and "reward=0.75" in lines[3]
    assert lines[4] == "before RL: accuracy=0.500"
    assert len(lines) == 5


def test_plain_lines_are_rate_limited_but_the_last_step_shows():
    out = io.StringIO()
    p = metrics_log.Progress(total=100, initial=10, desc="run", file=out, interval=3600.0, is_main=True)
    for _ in range(50):
        p.update({"loss": 1.0})
    p.close()  # stopped at step 60 of 100: its line is printed on close
    lines = out.getvalue().splitlines()
    assert [line.split(" (")[0] for line in lines] == ["run step 11/100", "run step 60/100"]


def test_write_is_not_glued_to_the_bar_on_a_terminal():
    out = _Terminal()
    p = metrics_log.Progress(total=3, desc="run", file=out, is_main=True)
    p.update({"loss": 1.0})
    p.write("before RL: accuracy=0.500")
    p.update({"loss": 1.0})
    p.close()
    text = out.getvalue()
    assert "\r" in text  # a bar was drawn
    pieces = [s.replace("\x1b[A", "").strip() for s in text.replace("\r", "\n").split("\n")]
    assert "before RL: accuracy=0.500" in pieces


def test_write_prints_when_the_bar_is_off_but_not_on_other_processes():
    out = io.StringIO()
    p = metrics_log.Progress(total=3, file=out, enabled=False, is_main=True)
    p.update({"loss": 1.0})
    p.write("step 10: accuracy=0.5")
    p.close()
    assert out.getvalue() == "step 10: accuracy=0.5\n"
    quiet = io.StringIO()
    p = metrics_log.Progress(total=3, file=quiet, is_main=False)
    p.update({"loss": 1.0})
    p.write("not on process 1")
    p.close()
    assert quiet.getvalue() == ""


def _tb_tags(directory: pathlib.Path) -> set[str]:
    """Scalar tags in the TFRecord event files under ``directory`` (length, crc, data, crc)."""
    tags = set()
    for f in directory.glob("events.out.tfevents.*"):
        data = f.read_bytes()
        i = 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i : i + 8])
            event = event_pb2.Event.FromString(data[i + 12 : i + 12 + n])
            tags.update(v.tag for v in event.summary.value)
            i += 12 + n + 4
    return tags


def test_tensorboard_tags_are_not_doubled(tmp_path):
    logger = metrics_log.MetricsLogger(tmp_path, tensorboard=True)
    logger.log("sft", 1, {"sft/loss": 2.0})
    logger.log("rl", 2, {"loss": 1.0, "reward/mean": 0.5})
    logger.log("eval", 2, {"eval/accuracy": 0.25})
    logger.close()
    assert _tb_tags(tmp_path / "tb") == {"sft/loss", "rl/loss", "rl/reward/mean", "eval/accuracy"}


def test_curves_say_they_are_smoothed(tmp_path):
    records = [{"phase": "rl", "step": s, "reward/mean": s % 3 / 2, "loss": 1.0 / s} for s in range(1, 20)]
    records.append({"phase": "eval", "step": 19, "eval/accuracy": 0.5})
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    fig, keys = plot.figure([tmp_path], smooth=0.6)
    assert keys == ["reward/mean", "eval/accuracy", "loss"]
    title = fig._suptitle.get_text()
    assert "smoothed" in title and "0.6" in title and "2.5-point window" in title
    panels = {ax.get_title() for ax in fig.axes}
    assert {"reward/mean (EMA 0.6)", "eval/accuracy", "loss (EMA 0.6)"} <= panels
    raw, _ = plot.figure([tmp_path], smooth=0.0)
    assert "raw" in raw._suptitle.get_text() and "smoothed" not in raw._suptitle.get_text()
    assert plot.plot_runs([tmp_path], tmp_path / "curves.png") == keys
    assert (tmp_path / "curves.png").stat().st_size > 0
