"""The console line per epoch (birds_tf/training/progress.py) from hand-made logs."""
import io

import numpy as np

from birds_tf.training import progress


def test_epoch_line_holds_the_protocol_figures_in_percent():
    logs = {"loss": 2.5, "ra": 0.0548, "train_loss": 1.87345, "train_ra": 5.4782, "lr": 0.1,
            "val_sa": 63.0, "val_ra": 35.125, "val_robust_loss": 2.0, "test_sa": 61.94,
            "test_ra": 33.36, "k": 0.083, "mask_updates": 3.0,
            "density/conv1": 0.5, "density/layer1_0_conv1": 0.12}
    line = progress.format_epoch(3, 24, logs, seconds=41.4, density=0.2)
    assert line == ("epoch  3/24  loss 1.873  train RA 5.5%  val SA 63.0% RA 35.1%  "
                    "test SA 61.9% RA 33.4%  density 20.0%  k 8.3%  41 s")
    assert "conv1" not in line and "0.0548" not in line and "lr" not in line


def test_dense_and_partial_logs():
    # The trainer's running fraction stands in when EpochEvaluation did not run; no density,
    # no k for a dense run; a NaN (no test split) is left out.
    line = progress.format_epoch(1, 2, {"loss": 0.5, "ra": 0.25, "val_sa": 50.0,
                                        "test_ra": float("nan")})
    assert line == "epoch 1/2  loss 0.500  train RA 25.0%  val SA 50.0%"
    line = progress.format_epoch(10, 200, {"train_loss": np.float32(1.0), "train_ra": 40.0,
                                           "val_sa": 70.0, "val_ra": 45.0}, seconds=3.0)
    assert line == "epoch  10/200  loss 1.000  train RA 40.0%  val SA 70.0% RA 45.0%  3 s"


def test_stage_line():
    row = {"stage": "stage1", "epoch": 4, "lr": 0.1, "train_loss": 1.25, "train_acc": 45.55,
           "val_sa": 60.0, "mask_distance_max": 0.0912, "seconds": 12.2}
    assert progress.format_stage(row) == ("stage1 epoch 4  loss 1.250  train acc 45.5%  "
                                          "val SA 60.0%  mask distance 0.091  12 s")


def test_callback_prints_one_line_per_epoch_with_the_global_density():
    import keras

    from birds_tf.layers import MaskedDense
    net = keras.Sequential([keras.Input((4,)), MaskedDense(3)])
    layer = net.layers[-1]
    mask = np.zeros(layer.mask.shape, np.float32)
    mask[:1] = 1.0                                 # one input row of four: 3 of 12 weights kept
    layer.mask.assign(mask)
    stream = io.StringIO()
    callback = progress.EpochProgress(2, sparse=True, stream=stream)
    callback.set_model(net)
    for epoch in range(2):
        callback.on_epoch_begin(epoch)
        callback.on_epoch_end(epoch, {"train_loss": 1.0, "train_ra": 10.0})
    lines = stream.getvalue().splitlines()
    assert [ln.split("  ")[0] for ln in lines] == ["epoch 1/2", "epoch 2/2"]
    assert all("density 25.0%" in ln for ln in lines)
