"""What every figure shares: the Agg backend, where PNGs go, TensorBoard image logging, a run's
legend label and its data splits."""
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from birds_tf.metrics.table import METHOD_NAMES  # noqa: E402
from birds_tf.utils import workdir as wd  # noqa: E402

DPI = 100


def figure(width=7.0, height=5.0, **kwargs):
    return plt.subplots(figsize=(width, height), dpi=DPI, **kwargs)


def out_dir(workdir, out=None):
    """``out`` if given, else the workdir's ``figures/`` folder."""
    path = out or wd.Workdir(workdir).figures_dir
    os.makedirs(path, exist_ok=True)
    return path


def save(fig, path, workdirs=(), tag=None):
    """Write ``fig`` as a PNG and log it as an image under each workdir's ``tensorboard/``."""
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    for workdir in workdirs:
        log_image(workdir, tag or os.path.splitext(os.path.basename(path))[0], path)
    return path


def log_image(workdir, tag, png_path):
    """TensorBoard image summary in ``<workdir>/tensorboard/figures``."""
    import tensorflow as tf
    with open(png_path, "rb") as f:
        image = tf.image.decode_png(f.read(), channels=4)
    writer = tf.summary.create_file_writer(wd.Workdir(workdir).tensorboard_figures_dir)
    with writer.as_default():
        tf.summary.image(tag, image[None], step=0)
    writer.close()


def label(workdir, res=None):
    """A legend label: the paper's method name and the target sparsity."""
    res = res or wd.results(workdir)
    name = METHOD_NAMES.get(res.get("method"), res.get("method", os.path.basename(workdir)))
    sparsity = float(res.get("target_sparsity") or 0.0)
    return f"{name} ({100 * sparsity:.0f}%)" if sparsity else name


def splits(workdir, cfg):
    """The run's dataset splits, as it was trained on (same limits and seed).

    Args:
      workdir: the run's folder (checked).
      cfg: its settings, ``birds_tf.experiment.train_eval.Config.from_workdir(workdir)``.
    """
    from birds_tf import data as data_lib  # TensorFlow, loaded when asked
    wd.check(workdir, ())
    return data_lib.get_dataset(cfg.dataset, batch_size=cfg.batch_size, data_dir=cfg.data_dir,
                                seed=cfg.seed, eval_batch_size=cfg.eval_batch_size,
                                max_train=cfg.max_train, max_eval=cfg.max_eval)
