"""Two MultiWorkerMirroredStrategy workers on loopback train FB+ (with mask updates) and end
with identical weights and masks."""
import json
import os
import socket
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def test_two_workers_end_identical(tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for index in range(2):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
                   TF_CONFIG=json.dumps({"cluster": cluster,
                                         "task": {"type": "worker", "index": index}}))
        cmd = [sys.executable, "-m", "launch.train", "--strategy=multi_worker",
               f"--workdir={tmp_path / f'worker{index}'}",
               "--gin_file=gin/table1/fb_plus_resnet18.gin", "--gin_file=gin/quickstart/smoke.gin",
               "--gin_bindings=train_eval.epochs = 1", "--gin_bindings=train_eval.max_train = 128",
               "--gin_bindings=train_eval.max_eval = 64", "--gin_bindings=train_eval.milestones = ()",
               "--gin_bindings=DynamicSparsity.delta_t = 1"]
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-4000:]
    import keras
    import birds_tf
    birds_tf.register_keras_objects()  # the custom layers, by name
    models = [keras.models.load_model(str(tmp_path / f"worker{i}" / "checkpoints" / "final.keras"))
              for i in range(2)]
    results = [json.loads((tmp_path / f"worker{i}" / "results.json").read_text())
               for i in range(2)]
    assert results[0]["mask_updates"] == results[1]["mask_updates"] == 2
    # Trainable weights are all-reduced every step. BatchNorm's moving statistics, like PyTorch
    # DDP without SyncBN, follow each worker's own batches (docs/speed.md, "Several GPUs and
    # hosts").
    for a, b in zip(models[0].trainable_weights, models[1].trainable_weights):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7,
                                   err_msg=a.path)
    masks0 = birds_tf.sparsity.get_masks(models[0])
    masks1 = birds_tf.sparsity.get_masks(models[1])
    for name in masks0:
        np.testing.assert_array_equal(masks0[name], masks1[name])
    assert results[0]["ra_final"] == results[1]["ra_final"]
