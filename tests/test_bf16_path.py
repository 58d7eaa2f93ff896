"""The mixed_bfloat16 path: bf16 convolutions, but the image, the perturbation, the input
standardisation and the attack loss stay float32."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import birds_tf  # noqa: E402
from birds_tf.attacks import pgd  # noqa: E402


def test_bf16_convs_with_float32_attack_math():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        net = birds_tf.models.build("preact_resnet18", 3, (8, 8, 3), width=4)
        assert net.get_layer("normalize").compute_dtype == "float32"
        assert net.get_layer("conv1").compute_dtype == "bfloat16"
        assert net.get_layer("conv1").kernel.dtype == "float32"  # fp32 master weights
        x = tf.constant(np.random.default_rng(0).random((4, 8, 8, 3)).astype("float32"))
        y = tf.constant([0, 1, 2, 0])
        # The standardised input a bf16 conv receives was computed in float32.
        stem = keras.Model(net.input, net.get_layer("normalize").output)
        assert stem(x).dtype == tf.float32
        adv = pgd.pgd_linf_graph(net, x, y, 8 / 255, 2 / 255, 3, training=True,
                                 seed=tf.constant([1, 2]))
        assert adv.dtype == tf.float32
        delta = (adv - x).numpy()
        assert np.abs(delta).max() <= 8 / 255 + 1e-6
        assert np.all((adv.numpy() >= 0) & (adv.numpy() <= 1))
        assert pgd.attack_loss(net(adv, training=False), y).dtype == tf.float32
    finally:
        keras.mixed_precision.set_global_policy("float32")
