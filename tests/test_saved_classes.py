"""A saved birds-tf model loads from the bottom of the house: ``utils.records.load_model``
imports the modules the file's config names, not a fixed list from above (tests/test_layering.py
counts such imports)."""
import os
import subprocess
import sys

import numpy as np

from birds_tf.models import build
from birds_tf.utils import records

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = """
import sys
import numpy as np
from birds_tf.utils import records
assert not any(m.startswith("birds_tf.layers") for m in sys.modules), "layers imported early"
net = records.load_model(sys.argv[1])
np.save(sys.argv[3], np.asarray(net(np.load(sys.argv[2]), training=False)))
print(" ".join(sorted(m for m in sys.modules if m.startswith("birds_tf."))))
"""


def test_a_saved_model_loads_in_a_process_that_imported_no_birds_tf_layer(tmp_path):
    net = build("small_dense", num_classes=3, input_shape=(8, 8, 1), mean=[0.5], std=[0.25])
    path, x_path, y_path = (str(tmp_path / n) for n in ("m.keras", "x.npy", "y.npy"))
    records.atomic_save_model(net, path)
    x = np.random.default_rng(0).uniform(size=(2, 8, 8, 1)).astype("float32")
    np.save(x_path, x)
    # The modules of the model's own classes, from the live model, not from the file.
    expected = sorted({type(layer).__module__ for layer in net._flatten_layers()
                       if type(layer).__module__.startswith("birds_tf.")})
    assert expected and records.import_saved_classes(path) == expected
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    child = subprocess.run([sys.executable, "-c", CHILD, path, x_path, y_path], cwd=ROOT,
                           env=env, capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stderr[-3000:]
    assert set(expected) <= set(child.stdout.split())
    np.testing.assert_allclose(np.load(y_path), np.asarray(net(x, training=False)), rtol=1e-6)
