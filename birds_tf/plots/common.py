"""What every figure shares: the Agg backend, where PNGs go, and TensorBoard image logging."""
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

DPI = 100


def figure(width=7.0, height=5.0, **kwargs):
    return plt.subplots(figsize=(width, height), dpi=DPI, **kwargs)


def out_dir(workdir, out=None):
    """``out`` if given, else the workdir's ``figures/`` folder."""
    path = out or os.path.join(os.fspath(workdir), "figures")
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
    writer = tf.summary.create_file_writer(os.path.join(os.fspath(workdir), "tensorboard",
                                                        "figures"))
    with writer.as_default():
        tf.summary.image(tag, image[None], step=0)
    writer.close()
