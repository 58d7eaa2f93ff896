"""KD and SWA (paper Figure 4): the loss by hand, the average, BN re-estimation, masks, a demo run
with tiny teachers, and bad input refused before training."""
import json
import os

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

import birds_tf
from birds_tf.sparsity import masks
from birds_tf.training import distillation, swa
from birds_tf.training.adversarial import AttackConfig
from birds_tf.training.optimizer import TorchSGD
from conftest import mirrored

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ["train_eval.max_train = 128", "train_eval.max_eval = 32", "train_eval.batch_size = 32"]


@pytest.fixture
def _gin_root(monkeypatch):
    monkeypatch.chdir(ROOT)
    gin.clear_config()
    yield
    gin.clear_config()


# -- KD loss ------------------------------------------------------------------------------------
def _np_log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def test_kd_loss_equals_a_hand_computation():
    rng = np.random.default_rng(0)
    s = rng.normal(size=(4, 3)).astype(np.float32) * 3
    t_std = rng.normal(size=(4, 3)).astype(np.float32) * 3
    t_adv = rng.normal(size=(4, 3)).astype(np.float32) * 3
    y = np.array([0, 2, 1, 2], np.int32)
    T = 2.0

    def kd(s, t):  # T^2 * mean_batch sum_c -softmax(t/T) log_softmax(s/T)
        return T * T * np.mean(np.sum(-np.exp(_np_log_softmax(t / T)) * _np_log_softmax(s / T),
                                      -1))

    ce = np.mean(-_np_log_softmax(s)[np.arange(4), y])
    expected = 0.3 * ce + 0.1 * kd(s, t_std) + 0.6 * kd(s, t_adv)

    assert float(tf.reduce_mean(distillation.kd_loss(s, t_std, T))) == pytest.approx(
        kd(s, t_std), rel=1e-5)
    teachers = [(distillation.Teacher(lambda x: tf.constant(t_std), 3, (2,), "std", "test"), 0.1),
                (distillation.Teacher(lambda x: tf.constant(t_adv), 3, (2,), "adv", "test"), 0.6)]
    net = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)])
    model = distillation.DistillationModel(net, AttackConfig(steps=0), teachers=teachers,
                                           ce_weight=0.3, temperature=T)
    per_example = model.compute_example_loss(tf.zeros((4, 2)), tf.constant(y), tf.constant(s))
    assert per_example.shape == (4,)
    assert float(tf.reduce_mean(per_example)) == pytest.approx(expected, rel=1e-5)


def test_teachers_stay_frozen_and_out_of_the_trainer():
    teacher_net = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
    before = [w.copy() for w in teacher_net.get_weights()]
    teacher = distillation.Teacher(lambda x: teacher_net(x, training=False), 3, (6,), "t", "k")
    net = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
    model = distillation.DistillationModel(net, AttackConfig(eps=0.1, step_size=0.05, steps=1),
                                           teachers=[(teacher, 0.6)], seed=0)
    model.compile(optimizer=TorchSGD(0.1))
    x = np.random.default_rng(1).random((8, 6)).astype("float32")
    model.fit(x, np.arange(8) % 3, batch_size=4, epochs=1, verbose=0)
    assert len(model.trainable_variables) == len(net.trainable_variables)
    for a, b in zip(before, teacher_net.get_weights()):
        np.testing.assert_array_equal(a, b)


# -- SWA ----------------------------------------------------------------------------------------
def _bn_net():
    return keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Conv2D(4, 3),
                             keras.layers.BatchNormalization(momentum=0.9),
                             keras.layers.ReLU(), keras.layers.Flatten(), keras.layers.Dense(3)])


def _images(n=20, seed=0):
    return np.random.default_rng(seed).random((n, 6, 6, 1)).astype("float32") * 2 + 0.5


def test_swa_average_after_n_updates_is_the_mean_of_the_snapshots(tmp_path):
    net = _bn_net()
    data = tf.data.Dataset.from_tensor_slices((_images(), np.zeros(20, np.int32))).batch(8)
    cb = swa.StochasticWeightAveraging(net, start_epoch=2, bn_data=data,
                                       directory=str(tmp_path))
    rng = np.random.default_rng(3)
    snapshots = []
    for epoch in range(4):
        weights = [rng.normal(size=w.shape).astype("float32") for w in net.get_weights()]
        net.set_weights(weights)
        cb.on_epoch_end(epoch, {})
        if epoch + 1 >= 2:
            snapshots.append([v.numpy() for v in net.trainable_variables])
    assert cb.n == 3
    for i, avg in enumerate(cb.swa_net.trainable_variables):
        np.testing.assert_allclose(avg.numpy(), np.mean([s[i] for s in snapshots], 0),
                                   rtol=1e-5, atol=1e-6)
    # Resume: a fresh callback restores the same average from its state.
    other = swa.StochasticWeightAveraging(net, start_epoch=2, bn_data=data)
    other.set_state(json.loads(json.dumps(cb.get_state())))
    assert other.n == 3
    for a, b in zip(cb.swa_net.get_weights(), other.swa_net.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert os.path.exists(tmp_path / "swa.keras")
    assert len(os.listdir(tmp_path / "swa_resume")) == 2


def test_swa_bn_statistics_are_recomputed_on_the_clean_data():
    net = _bn_net()
    x = _images(20)
    ds = tf.data.Dataset.from_tensor_slices((x, np.zeros(20, np.int32))).batch(8)
    # Make the running statistics something else than the data's: a few train steps elsewhere.
    for _ in range(3):
        net(_images(8, seed=9) * 0.1, training=True)
    running = [net.layers[1].moving_mean.numpy().copy(), net.layers[1].moving_variance.numpy()]
    cb = swa.StochasticWeightAveraging(net, start_epoch=1, bn_data=ds)
    cb.update()
    bn = cb.swa_net.layers[1]
    # Manual pass: the BN inputs (conv outputs) per batch, cumulative average weighted by size.
    conv = net.layers[0]
    means, variances, sizes = [], [], []
    for start in range(0, 20, 8):
        h = conv(x[start:start + 8]).numpy()
        means.append(h.mean((0, 1, 2)))
        variances.append(h.var((0, 1, 2)))
        sizes.append(len(h))
    w = np.asarray(sizes, np.float64) / sum(sizes)
    np.testing.assert_allclose(bn.moving_mean.numpy(), np.tensordot(w, means, 1), rtol=1e-4,
                               atol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), np.tensordot(w, variances, 1),
                               rtol=1e-4, atol=1e-5)
    assert not np.allclose(bn.moving_mean.numpy(), running[0], atol=1e-3)
    assert not np.allclose(bn.moving_variance.numpy(), running[1], atol=1e-3)
    assert bn.momentum == 0.9  # restored after the pass
    # The trained model's own statistics are untouched.
    np.testing.assert_array_equal(net.layers[1].moving_mean.numpy(), running[0])


def test_sparse_swa_model_keeps_exactly_the_current_mask_zeros():
    net = birds_tf.sparsify(_bn_net())
    birds_tf.sparsity.init_sparse(net, 0.5, "uniform", 0)
    data = tf.data.Dataset.from_tensor_slices((_images(), np.zeros(20, np.int32))).batch(10)
    cb = swa.StochasticWeightAveraging(net, start_epoch=1, bn_data=data)
    rng = np.random.default_rng(0)
    for epoch in range(3):
        for layer in masks.masked_layers(net):
            layer.kernel.assign(rng.normal(size=layer.kernel.shape).astype("float32"))
            new = (rng.random(layer.kernel.shape) < 0.5).astype("float32")
            masks.set_mask(layer, new)  # a moving mask, as FB/FB+ have
        cb.on_epoch_end(epoch, {})
    current = masks.get_masks(net)
    for layer in masks.masked_layers(cb.swa_net):
        mask = current[layer.name]
        np.testing.assert_array_equal(layer.mask.numpy(), mask)
        kernel = layer.kernel.numpy()
        assert np.all(kernel[mask == 0] == 0)
        assert np.all(kernel[mask == 1] != 0)


# -- end to end ---------------------------------------------------------------------------------
def _train(files, bindings, workdir):
    from launch import train
    gin.clear_config()
    try:
        return train.run([os.path.join(ROOT, f) for f in files], bindings, str(workdir),
                         verbose=0)
    finally:
        gin.clear_config()


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    """Two tiny dense digits teachers: clean (eps 0) and PGD, one epoch each."""
    cwd = os.getcwd()
    os.chdir(ROOT)
    base = tmp_path_factory.mktemp("teachers")
    one = ["train_eval.epochs = 1", "train_eval.milestones = ()",
           "train_eval.rgg_eval = False"] + SMALL
    try:
        _train(["gin/figure4/std_resnet18.gin", "gin/quickstart/smoke.gin"], one, base / "std")
        _train(["gin/table1/dense_resnet18.gin", "gin/quickstart/smoke.gin"], one, base / "adv")
    finally:
        os.chdir(cwd)
    return {"std": str(base / "std"), "adv": str(base / "adv")}


def _kd_bindings(teachers, **extra):
    out = [f"KnowledgeDistillation.teacher_std = '{teachers['std']}'",
           f"KnowledgeDistillation.teacher_adv = '{teachers['adv']}'"] + SMALL
    out += [f"{k.replace('__', '.')} = {v!r}" for k, v in extra.items()]
    return out


class _Interrupted(Exception):
    pass


def test_fb_plus_with_kd_and_swa_runs_end_to_end_and_resumes(tmp_path, _gin_root, teachers,
                                                              monkeypatch):
    from birds_tf.training import resume
    from birds_tf.utils import workdir as wd
    with open(os.path.join(teachers["std"], "config.gin")) as f:
        assert "train_eval.train_eps = 0.0" in f.read()  # the clean teacher
    traced = []
    loss = distillation.DistillationModel.compute_example_loss
    monkeypatch.setattr(distillation.DistillationModel, "compute_example_loss",
                        lambda self, *a: traced.append(len(self._kd_teachers)) or loss(self, *a))
    # Interrupt at the first step of epoch 2 (epoch 1 and its SWA average are saved), then rerun
    # the same command: it resumes with the average of epoch 1.
    fault = resume.fault_point

    def interrupt(where, epoch, step=None):
        if where == "step" and epoch == 2:
            raise _Interrupted()
        return fault(where, epoch, step)

    files = ["gin/figure4/fb_plus_kd_swa_resnet18.gin", "gin/quickstart/smoke.gin"]
    workdir = tmp_path / "run"
    monkeypatch.setattr(resume, "fault_point", interrupt)
    with pytest.raises(_Interrupted):
        _train(files, _kd_bindings(teachers), workdir)
    monkeypatch.setattr(resume, "fault_point", fault)
    results = _train(files, _kd_bindings(teachers), workdir)

    assert results["method"] == "fb_plus" and results["kd"] is True and results["swa"] is True
    assert traced and set(traced) == {2}  # the main stage distilled from both teachers
    assert results["kd_teacher_std"].endswith(os.path.join("checkpoints", "final.keras"))
    assert results["kd_teacher_adv"].endswith(os.path.join("checkpoints", "best.keras"))
    assert results["swa_updates"] == 2 and results["swa_start_epoch"] == 1
    assert results["kd_teacher_forward_flops"] > 0
    for key in ("swa_ra_best", "swa_ra_final", "swa_ra_diff", "swa_sa_best", "swa_sa_final",
                "swa_best_epoch", "swa_train_ra_final", "swa_rgg_final", "ra_best", "ra_final",
                "sa_final", "rgg_final"):
        assert np.isfinite(results[key]), key
    history = wd.Workdir(workdir).read_metrics()
    assert [int(r["swa_updates"]) for r in history] == [1, 2]
    assert history[-1]["swa_test_ra"] == pytest.approx(results["swa_ra_final"])
    # The saved average keeps the final mask of FB+ ...
    avg = keras.models.load_model(workdir / "checkpoints" / "swa.keras", compile=False)
    final = wd.load_model(workdir, "final")
    assert 0.75 < 1 - masks.global_density(avg) < 0.85
    final_masks = {id(layer.kernel): layer.mask.numpy() for layer in masks.masked_layers(final)}
    for a, b in zip(masks.masked_layers(avg), masks.masked_layers(final)):
        np.testing.assert_array_equal(a.mask.numpy(), b.mask.numpy())
        assert np.all(a.kernel.numpy()[b.mask.numpy() == 0] == 0)
    # ... and is (epoch-1 average restored on resume + final weights) / 2, masked.
    first = keras.models.clone_model(final)
    first.load_weights(workdir / "checkpoints" / "swa_resume" / "epoch_0001.weights.h5")
    for a1, w2, a2 in zip(first.trainable_variables, final.trainable_variables,
                          avg.trainable_variables):
        expected = (a1.numpy() + w2.numpy()) / 2
        if id(w2) in final_masks:
            expected = expected * final_masks[id(w2)]
        np.testing.assert_allclose(a2.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_swa_under_a_mirrored_strategy_matches_one_device(two_cpus):
    strategy = mirrored(two_cpus)
    with strategy.scope():
        net = _bn_net()
    x = _images(40)
    ds = tf.data.Dataset.from_tensor_slices((x, np.arange(40) % 3)).batch(16)
    on_two = swa.StochasticWeightAveraging(net, 1, ds, val=ds, strategy=strategy,
                                             attack=AttackConfig(0.1, 0.05, 1, True, "eval"))
    logs = {}
    on_two.on_epoch_end(0, logs)
    assert 0 <= logs["swa_val_ra"] <= 100
    single = swa.StochasticWeightAveraging(net, 1, ds)
    single.update()
    for a, b in zip(on_two.swa_net.weights, single.swa_net.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)


def test_a_savedmodel_teacher_is_accepted(tmp_path, teachers):
    from birds_tf.export import export_workdir
    out = tmp_path / "exported"
    export_workdir(teachers["adv"], str(out), "best")
    teacher = distillation.load_teacher(str(out), role="teacher_adv")
    assert teacher.kind == "saved_model" and teacher.num_classes == 10
    distillation.check_teacher(teacher, 10, (8, 8, 1))
    keras_teacher = distillation.load_teacher(teachers["adv"], "best")
    x = tf.random.uniform((4, 8, 8, 1))
    np.testing.assert_allclose(teacher(x).numpy(), keras_teacher(x).numpy(), rtol=1e-4,
                               atol=1e-4)
    with pytest.raises(ValueError, match="classes"):
        distillation.check_teacher(teacher, 100, (8, 8, 1))


# -- bad input ----------------------------------------------------------------------------------
def _foreign_teacher(path, classes, shape):
    net = keras.Sequential([keras.Input(shape), keras.layers.Flatten(),
                            keras.layers.Dense(classes)])
    net.save(path)
    return str(path)


@pytest.mark.parametrize("binding,error,match", [
    ("SWA.start_epoch = 3", ValueError, "beyond the last epoch"),
    ("SWA.start_epoch = 0", ValueError, "start_epoch must be an integer >= 1"),
    ("KnowledgeDistillation.std_weight = -0.1", ValueError, "std_weight must be a number >= 0"),
    ("KnowledgeDistillation.temperature = 0.0", ValueError, "temperature must be > 0"),
    ("KnowledgeDistillation.teacher_adv = 'runs/no_such_teacher'", FileNotFoundError,
     "does not exist"),
    ("KnowledgeDistillation.teacher_std = None", ValueError, "KD needs the teacher_std"),
])
def test_bad_smoothing_settings_are_refused_before_training(tmp_path, _gin_root, binding,
                                                            error, match):
    known = tmp_path / "t.keras"
    _foreign_teacher(known, 10, (8, 8, 1))
    bindings = [f"KnowledgeDistillation.teacher_std = '{known}'",
                f"KnowledgeDistillation.teacher_adv = '{known}'", binding]
    with pytest.raises(error, match=match):
        _train(["gin/figure4/fb_plus_kd_swa_resnet18.gin", "gin/quickstart/smoke.gin"], bindings,
               tmp_path / "w")
    assert not os.path.exists(tmp_path / "w" / "metrics.csv")


@pytest.mark.parametrize("classes,shape,match", [(5, (8, 8, 1), "predicts 5 classes"),
                                                 (10, (6, 6, 1), "inputs of shape")])
def test_a_mismatched_teacher_is_refused_before_training(tmp_path, _gin_root, classes, shape,
                                                         match):
    good = _foreign_teacher(tmp_path / "good.keras", 10, (8, 8, 1))
    bad = _foreign_teacher(tmp_path / "bad.keras", classes, shape)
    bindings = [f"KnowledgeDistillation.teacher_std = '{good}'",
                f"KnowledgeDistillation.teacher_adv = '{bad}'"] + SMALL
    with pytest.raises(ValueError, match=match):
        _train(["gin/figure4/dense_kd_resnet18.gin", "gin/quickstart/smoke.gin"], bindings,
               tmp_path / "w")
    assert not os.path.exists(tmp_path / "w" / "metrics.csv")


@pytest.mark.parametrize("name", ["std_resnet18", "dense_kd_resnet18", "dense_swa_resnet18",
                                  "dense_kd_swa_resnet18", "fb_plus_kd_resnet18",
                                  "fb_plus_swa_resnet18", "fb_plus_kd_swa_resnet18"])
def test_configs_name_their_command_and_figure(_gin_root, name):
    from launch import common
    from birds_tf.experiment import smoothing
    from birds_tf.experiment.train_eval import Config
    path = os.path.join("gin", "figure4", name + ".gin")
    with open(path) as f:
        head = f.read().split("\n")[:3]
    assert head[0] == (f"# Command: python -m launch.train --gin_file=gin/figure4/{name}.gin "
                       f"--workdir=runs/{'dense_std_resnet18' if name == 'std_resnet18' else name}")
    assert any(line.startswith("# Reproduces:") for line in head)
    common.parse_gin([path], [])
    bound = gin.get_bindings("train_eval")
    config = Config(**{k: v for k, v in bound.items() if k in Config.__dataclass_fields__})
    smooth = smoothing.Smoothing()
    smooth.swa.validate(config.epochs)
    assert smooth.kd.enabled == ("_kd" in name)
    assert smooth.swa.enabled == ("swa" in name)
    if name == "std_resnet18":
        assert config.train_attack().clean
    if smooth.swa.enabled:
        assert smooth.swa.start_epoch == 56
    if smooth.kd.enabled:
        assert (smooth.kd.ce_weight, smooth.kd.std_weight, smooth.kd.adv_weight,
                smooth.kd.temperature) == (0.3, 0.1, 0.6, 2.0)
