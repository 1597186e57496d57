"""Compile once per machine (``train.compile_cache``), the ETA without evaluations, ``--help``'s config sections
and the did-you-mean of an unknown field (``train.cli``)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import jax
import pytest
from jax import monitoring
from tqdm import tqdm

from configs import yolov1_shapes, yolov8n_shapes
from tests.train import trainproc as tp
from train import cli, compile_cache, loop

_CACHE_OPTIONS = (
    "jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
    "jax_persistent_cache_min_entry_size_bytes",
)


@pytest.fixture
def jax_cache_options():
    """Restores JAX's cache options after the test (nothing compiles in between, so no cache is opened)."""
    saved = {k: getattr(jax.config, k) for k in _CACHE_OPTIONS}
    yield
    for k, v in saved.items():
        jax.config.update(k, v)


def test_cache_dir_is_jaxdet_cache_dir_xla(tmp_path, monkeypatch, jax_cache_options):
    monkeypatch.setenv("JAXDET_CACHE_DIR", str(tmp_path / "root"))
    monkeypatch.delenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", raising=False)
    assert compile_cache.default_dir() == str(tmp_path / "root" / "xla")
    path = compile_cache.enable_for(yolov8n_shapes.get_config())
    assert path == str(tmp_path / "root" / "xla")
    assert os.path.isdir(path)
    assert compile_cache.current_dir() == path
    assert jax.config.jax_persistent_cache_min_compile_time_secs == compile_cache.MIN_COMPILE_TIME_S


def test_cache_dir_defaults_to_the_user_cache(monkeypatch):
    monkeypatch.delenv("JAXDET_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert compile_cache.default_dir() == os.path.expanduser(os.path.join("~", ".cache", "jaxdet", "xla"))


def test_compile_cache_false_leaves_the_cache_off(tmp_path, monkeypatch, jax_cache_options):
    monkeypatch.setenv("JAXDET_CACHE_DIR", str(tmp_path))
    jax.config.update("jax_compilation_cache_dir", None)
    config = yolov1_shapes.get_config()
    assert config.compile_cache is True  # on by default (yolov8n_shapes and the others derive from it)
    config.compile_cache = False
    assert compile_cache.enable_for(config) is None
    assert compile_cache.current_dir() is None
    assert not os.path.exists(tmp_path / "xla")


def test_min_compile_time_follows_jax_variable(tmp_path, monkeypatch, jax_cache_options):
    monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    compile_cache.enable(str(tmp_path))
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.0


def test_cache_hits_counts_only_hits_inside_the_block():
    with compile_cache.CacheHits() as hits:
        monitoring.record_event("/jax/compilation_cache/cache_misses")
        monitoring.record_event("/jax/compilation_cache/cache_hits")
    monitoring.record_event("/jax/compilation_cache/cache_hits")  # after the block: not counted
    assert hits.count == 1


def test_eta_excludes_evaluation_time():
    """Steps of 1 s, then a 100 s evaluation: the bar's rate stays 1 step/s (without the correction the EMA rate
    takes the evaluation as one 101 s step and the ETA jumps)."""

    class Clock:
        t = 1000.0

        def __call__(self):
            return self.t

    clock = Clock()
    rates = {}
    for correct in (True, False):
        bar = tqdm(total=100, file=io.StringIO(), mininterval=0, miniters=1)
        bar._time = clock
        bar.start_t = bar.last_print_t = clock()
        for _ in range(5):
            clock.t += 1.0
            bar.update(1)
        clock.t += 100.0  # the evaluation
        if correct:
            loop._exclude_from_eta(bar, 100.0)
        clock.t += 1.0
        bar.update(1)
        rates[correct] = bar.format_dict["rate"] or bar.format_dict["n"] / bar.format_dict["elapsed"]
        assert bar.format_dict["elapsed"] == pytest.approx(6.0 if correct else 106.0)
        bar.close()
    assert rates[True] == pytest.approx(1.0)
    assert rates[False] < 0.8


def test_help_lists_the_config_sections(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--config.<section>.<field>=value" in out
    for line in ("  (top level): ", "  train: ", "  data: ", "  model: ", "  loss: ", "  eval: ", "  mesh: "):
        assert line in out, out
    assert "compile_cache" in out and "steps" in out and "scale" in out  # the default (YOLOv8n) config's fields


def test_help_lists_the_given_config(capsys):
    with pytest.raises(SystemExit):
        cli.parse_args(["--config", "configs/yolov1_shapes.py", "-h"])
    out = capsys.readouterr().out
    assert "Config sections of yolov1_shapes" in out
    assert "grid_size" in out


@pytest.mark.parametrize(
    "dotted, expected",
    [("train.step", "train.steps"), ("steps", "train.steps"), ("trian.steps", "train.steps"),
     ("modle.head", "model.head"), ("data.max_object", "data.max_objects"), ("zzzz", None)],
)
def test_unknown_field_suggests_the_nearest_name(dotted, expected):
    config = yolov8n_shapes.get_config()
    assert cli.suggest_field(config, dotted) == expected
    with pytest.raises(cli.UsageError) as err:
        cli.check_override(config, dotted)
    if expected is None:
        assert "did you mean" not in str(err.value)
    else:
        assert f"did you mean `{expected}`?" in str(err.value)


def test_unknown_field_on_the_command_line_suggests_the_nearest_name():
    proc = subprocess.run(
        [sys.executable, "-m", "train", "--config.train.step=3", "--workdir", "/nonexistent/never-created"],
        env=tp.env_for(1), cwd=tp.REPO, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert "did you mean `train.steps`?" in proc.stderr, proc.stderr


@pytest.mark.slow
def test_second_run_reads_the_train_step_from_the_cache(tmp_path):
    """Two tiny runs in two workdirs share one cache: the first compiles and saves, the second reads the step."""
    cache = {"JAXDET_CACHE_DIR": str(tmp_path / "cache"), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    env = tp.env_for(1, cache)
    flags = (
        *tp.YOLOV1, "--config.data.image_size=32", *tp.TINY_GRID_MODEL, "--config.data.train_size=16",
        "--config.data.val_size=8", "--config.eval.num_images=8", "--config.eval.batch_size=8",
        "--config.train.batch_size=8", "--config.train.warmup_steps=1", "--config.train.steps=2",
        "--config.train.eval_every=0", "--config.train.checkpoint_every=0", "--config.train.progress_bar=false",
        "--config.eval.max_detections=8",
    )

    def train(name, *extra):
        proc = subprocess.run(
            [sys.executable, "-m", "train", *flags, *extra, "--workdir", str(tmp_path / name)],
            env=env, cwd=tp.REPO, capture_output=True, text=True, timeout=300,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        with open(tmp_path / name / "summary.json") as f:
            return proc.stdout, json.load(f)

    out1, summary1 = train("first")
    assert isinstance(summary1["eval"]["num_images"], int) and summary1["eval"]["num_images"] == 8  # a count
    evals = [r for r in map(json.loads, open(tmp_path / "first" / "metrics.jsonl")) if r["kind"] == "eval"]
    assert evals and all(isinstance(r["num_gt"], int) and isinstance(r["mAP"], float) for r in evals)
    assert "compiling the train step ..." in out1
    assert "saved to the persistent compilation cache" in out1 and not summary1["compile_cache_hit"]
    assert os.listdir(tmp_path / "cache" / "xla")
    out2, summary2 = train("second")
    assert "read from the persistent compilation cache" in out2, out2
    assert summary2["compile_cache_hit"]
    out3, summary3 = train("third", "--config.compile_cache=False")
    assert "persistent compilation cache off" in out3 and not summary3["compile_cache_hit"]
