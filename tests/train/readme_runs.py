"""The ``python -m train`` commands of README.md and train/README.md, and a smoke run of them (for the
``test_readme_*`` files).

Commands are read from the indented code blocks (continuation lines joined, comments dropped):

- commands on the synthetic data, and the worked example's COCO/VOC/YOLO commands after running its export
  script (``/tmp/`` rewritten to a temporary folder), train for two steps at 32 px;
- commands on a user's own data (a ``data.name`` with paths that are not the worked example's) cannot run
  here: their config is parsed and checked by ``train.validate`` (everything but the missing files);
- the multi-host lines (``python -m train ...`` on each host) are templates, not commands.

The runs are split by head so that two test files (and so two pytest-xdist workers) share them: the YOLOv8n
runs, whose compiles take minutes, and the grid heads (YOLOv1, polygon) with a tiny backbone.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys

from tests.train import trainproc as tp

DOCS = ("README.md", os.path.join("train", "README.md"))
#: appended to every runnable command: later flags win, so this is a two-step run at 32 px. The same shapes for
#: every command (``max_objects`` too) let the YOLOv8n runs share their executables through the compilation cache.
SMOKE = (
    "--config.data.image_size=32", "--config.data.max_objects=24",
    "--config.eval.num_images=8", "--config.eval.batch_size=8",
    "--config.train.batch_size=8", "--config.train.warmup_steps=1", "--config.train.steps=2",
    "--config.train.eval_every=0", "--config.train.checkpoint_every=0", "--config.train.progress_bar=false",
    "--config.eval.max_detections=8",
)
#: and, on the synthetic splits (the only ones that read these fields), small splits;
SMOKE_SYNTHETIC = ("--config.data.train_size=32", "--config.data.val_size=8")
#: and, for the grid heads (YOLOv1, polygon), a tiny backbone; YOLOv8n (the default) runs as it is, so a README
#: command that changes its compiled step (another scale, say) costs its test a YOLOv8 compile (minutes).
SMOKE_GRID = tp.TINY_GRID_MODEL

#: the subprocess: runs the commands of the wanted head family ("yolov8" or "grid"), names the others as
#: SKIP, and (``check_user_data``) validates the user-data commands' configs.
_PROGRAM = """
import json, sys, time
from train import cli, compile_cache
from train.validate import validate_config
cache, script, runs, checks, smoke, smoke_synthetic, smoke_grid, wanted = json.loads(sys.argv[1])
compile_cache.enable(cache, min_compile_time_s=0.5)
exec(script)
for argv in runs:
    config = cli.parse_args(argv)[0]
    head = config.model.head
    if (head == "yolov8") != (wanted == "yolov8"):
        print("SKIP", head, json.dumps(argv), flush=True)
        continue
    print("RUN", head, json.dumps(argv), flush=True)
    t0 = time.perf_counter()
    synthetic = smoke_synthetic if config.data.name in ("shapes", "dense_shapes") else []
    cli.main(argv + smoke + synthetic + (smoke_grid if head != "yolov8" else []))
    print(f"RAN in {time.perf_counter() - t0:.1f} s", flush=True)
for argv in checks:
    config, name, workdir = cli.parse_args(argv)
    validate_config(config, workdir)
    print("CHECKED", json.dumps(argv), flush=True)
"""


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


def run_readme_commands(tmp_path, wanted: str, check_user_data: bool) -> str:
    """Runs the README commands of the ``wanted`` head family (``"yolov8"`` or ``"grid"``) at smoke size in one
    subprocess, and validates the user-data commands if ``check_user_data``; returns its stdout after checking
    that every command was run or skipped (and every user-data command checked) and that each run finished."""
    commands, scripts = readme_commands()
    data = str(tmp_path / "data") + "/"
    runs, checks = [], []
    # identical commands run once (the bare `python -m train` is in several places)
    commands = [c for i, c in enumerate(commands) if c not in commands[:i]]
    for i, argv in enumerate(commands):
        argv = [a.replace("/tmp/", data) for a in argv]
        argv = [a for j, a in enumerate(argv) if a != "--workdir" and (j == 0 or argv[j - 1] != "--workdir")]
        argv += ["--workdir", str(tmp_path / f"run{i}")]
        paths = [a for a in argv if a.startswith(("--config.data.train_path=", "--config.data.train_images="))]
        own_data = bool(paths) and not any(data in a for a in paths)
        (checks if own_data else runs).append(argv)
    assert checks, "the user-data example is no longer recognised"
    args = [str(tmp_path / "jax_cache"), scripts[0].replace("/tmp/", data), runs, checks if check_user_data else [],
            list(SMOKE), list(SMOKE_SYNTHETIC), list(SMOKE_GRID), wanted]
    proc = subprocess.run(
        [sys.executable, "-c", _PROGRAM, json.dumps(args)],
        env=tp.env_for(1), cwd=tp.REPO, capture_output=True, text=True, timeout=900,
    )
    out = proc.stdout
    assert proc.returncode == 0, f"{out[-4000:]}\n{proc.stderr[-4000:]}"
    ran = len(re.findall(r"^RUN ", out, re.M))
    assert ran >= 1 and ran + len(re.findall(r"^SKIP ", out, re.M)) == len(runs), out[-4000:]
    assert len(re.findall(r"^CHECKED ", out, re.M)) == (len(checks) if check_user_data else 0), out[-4000:]
    assert len(re.findall(r"^final: mAP=", out, re.M)) == ran, out[-4000:]
    return out
