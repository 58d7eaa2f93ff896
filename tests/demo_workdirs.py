"""Two demo-size workdirs (dense PGD-AT and Flying Bird+) shared by the report, plot, export
and FLOPs tests: made once per pytest session under its base temp folder, then reused."""
import os

import gin

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINDINGS = ["train_eval.epochs = 3", "train_eval.milestones = (2,)",
            "train_eval.batch_size = 32", "train_eval.max_train = 96",
            "train_eval.max_eval = 64", "train_eval.train_steps = 1",
            "train_eval.eval_steps = 1"]
RUNS = {"dense": ["gin/quickstart/quickstart.gin", "gin/quickstart/smoke.gin"],
        "fb_plus": ["gin/table1/fb_plus_resnet18.gin", "gin/quickstart/smoke.gin"],
        "fb_plus_channel": ["gin/beyond_paper/fb_plus_channel_resnet18.gin",
                            "gin/quickstart/smoke.gin"]}
# Dead channels stay in the model (masked) so that launch.export --shrink has work to do.
EXTRA = {"fb_plus_channel": ["FlyingBirdPlusChannel.shrink_during_training = False"]}


def make(tmp_path_factory, names=("dense", "fb_plus")):
    """``{name: workdir path}``; each run is trained the first time it is asked for."""
    from launch import train
    base = tmp_path_factory.getbasetemp() / "birds_demo_runs"
    out = {}
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        for name in names:
            workdir = base / name
            if not (workdir / "results.json").exists():
                gin.clear_config()
                train.run([os.path.join(ROOT, f) for f in RUNS[name]],
                          BINDINGS + EXTRA.get(name, []), str(workdir),
                          verbose=0)
                gin.clear_config()
            out[name] = workdir
    finally:
        os.chdir(cwd)
    return out
