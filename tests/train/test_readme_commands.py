"""Every ``python -m train`` command in README.md and train/README.md runs (at smoke size), so none can rot.

Commands are read from the indented code blocks (continuation lines joined, comments dropped):

- commands on the synthetic data, and the worked example's COCO/VOC/YOLO commands after running its export
  script (``/tmp/`` rewritten to a temporary folder), train for two steps of a tiny model;
- commands on a user's own data (a ``data.name`` with paths that are not the worked example's) cannot run
  here: their config is parsed and checked by ``train.validate`` (everything but the missing files);
- the multi-host lines (``python -m train ...`` on each host) are templates, not commands.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import trainproc as tp  # noqa: E402

DOCS = ("README.md", os.path.join("train", "README.md"))
#: appended to every runnable command: later flags win, so this is a two-step run at 32 px. The same shapes for
#: every command (``max_objects`` too) let the YOLOv8n runs share their executables through the compilation cache.
SMOKE = (
    "--config.data.image_size=32", "--config.data.train_size=32", "--config.data.max_objects=24",
    "--config.data.val_size=8", "--config.eval.num_images=8", "--config.eval.batch_size=8",
    "--config.train.batch_size=8", "--config.train.warmup_steps=1", "--config.train.steps=2",
    "--config.train.eval_every=0", "--config.train.checkpoint_every=0", "--config.train.progress_bar=false",
    "--config.eval.max_detections=8",
)
#: and, for the grid heads (YOLOv1, polygon), a tiny backbone; YOLOv8n (the default) runs as it is, so a README
#: command that changes its compiled step (another scale, say) costs this test a YOLOv8 compile (minutes).
SMOKE_GRID = tp.TINY_GRID_MODEL


def _code_lines(path: str) -> list[str]:
    """The indented (code-block) lines of a markdown file, with continuation lines joined."""
    out, pending = [], ""
    for line in open(os.path.join(tp.REPO, path)):
        if not line.startswith("    "):
            pending = ""
            continue
        text = pending + (line[4:].rstrip() if not pending else line.strip())  # the block's indent removed
        if text.endswith("\\"):
            pending = text[:-1] + " "
            continue
        pending = ""
        out.append(text)
    return out


def readme_commands() -> tuple[list[list[str]], list[str]]:
    """``(commands as argv lists after 'python -m train', export scripts)`` of both READMEs."""
    commands, scripts = [], []
    for doc in DOCS:
        lines = _code_lines(doc)
        for i, text in enumerate(lines):
            if text.startswith("python - <<'PY'"):
                end = lines.index("PY", i)
                scripts.append("\n".join(lines[i + 1: end]))
            text = text.split("&&")[-1].strip()  # `pip install ... && python -m train`
            if not text.startswith("python -m train") or text.startswith("python -m train."):
                continue
            commands.append(shlex.split(text, comments=True)[3:])
    return commands, scripts


def test_the_readmes_have_the_commands_we_expect():
    commands, scripts = readme_commands()
    assert len(commands) >= 12 and len(scripts) == 1
    assert [] in commands  # the bare `python -m train`
    assert any("--config.data.name=voc" in c for c in commands)


def test_every_readme_command_runs(tmp_path):
    commands, scripts = readme_commands()
    data = str(tmp_path / "data") + "/"
    exec_script = scripts[0].replace("/tmp/", data)
    runs, checks = [], []
    for i, argv in enumerate(commands):
        argv = [a.replace("/tmp/", data) for a in argv]
        argv = [a for j, a in enumerate(argv) if a != "--workdir" and (j == 0 or argv[j - 1] != "--workdir")]
        argv += ["--workdir", str(tmp_path / f"run{i}")]
        paths = [a for a in argv if a.startswith(("--config.data.train_path=", "--config.data.train_images="))]
        own_data = bool(paths) and not any(data in a for a in paths)
        (checks if own_data else runs).append(argv)
    assert checks, "the user-data example is no longer recognised"
    program = f"""
import json, sys
import jax
jax.config.update("jax_compilation_cache_dir", {str(tmp_path / 'jax_cache')!r})
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
from train import cli
from train.validate import validate_config
exec({exec_script!r})
runs, checks, smoke, smoke_grid = json.loads(sys.argv[1])
for argv in runs:
    head = cli.parse_args(argv)[0].model.head
    print("RUN", head, json.dumps(argv), flush=True)
    cli.main(argv + smoke + (smoke_grid if head != "yolov8" else []))
for argv in checks:
    config, name, workdir = cli.parse_args(argv)
    validate_config(config, workdir)
    print("CHECKED", json.dumps(argv), flush=True)
"""
    proc = subprocess.run(
        [sys.executable, "-c", program, json.dumps([runs, checks, list(SMOKE), list(SMOKE_GRID)])],
        env=tp.env_for(1), cwd=tp.REPO, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    assert proc.stdout.count("RUN ") == len(runs) and proc.stdout.count("CHECKED ") == len(checks)
    # the bare `python -m train` (given only a --workdir here) trains the default YOLOv8n
    assert re.search(r'^RUN yolov8 \["--workdir", "[^"]*"\]$', proc.stdout, re.M), proc.stdout[-4000:]
    assert len(re.findall(r"^final: mAP=", proc.stdout, re.M)) == len(runs), proc.stdout[-4000:]
