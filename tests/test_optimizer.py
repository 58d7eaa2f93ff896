"""TorchSGD and MultiStepLR against PyTorch's update rule computed by hand."""
import numpy as np
import pytest
import keras

from birds_tf.training.optimizer import MultiStepLR, TorchSGD, momentum_buffer


def _torch_sgd_reference(w0, grads, lrs, momentum, wd):
    """torch.optim.SGD: d = g + wd*w; buf = m*buf + d (buf = d at step 1); w -= lr*buf."""
    w, buf, out = np.array(w0, "float64"), None, []
    for g, lr in zip(grads, lrs):
        d = g + wd * w
        buf = d.copy() if buf is None else momentum * buf + d
        w = w - lr * buf
        out.append(w.copy())
    return out, buf


def test_update_matches_pytorch_across_a_learning_rate_drop():
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(3, 2)).astype("float32")
    grads = [rng.normal(size=(3, 2)).astype("float32") for _ in range(6)]
    steps_per_epoch = 2
    schedule = MultiStepLR(0.1, milestones=[2], steps_per_epoch=steps_per_epoch)
    var = keras.Variable(w0)
    opt = TorchSGD(schedule, momentum=0.9, l2=5e-4)
    lrs = [0.1, 0.1, 0.1, 0.1, 0.01, 0.01]  # epochs 0,1 at 0.1; epoch 2 after the drop
    expected, buf = _torch_sgd_reference(w0, grads, lrs, 0.9, 5e-4)
    for g, want in zip(grads, expected):
        opt.apply([g], [var])
        np.testing.assert_allclose(var.numpy(), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(momentum_buffer(opt, var).numpy(), buf, rtol=1e-5, atol=1e-6)


def test_keras_sgd_differs_after_the_drop_so_the_port_matters():
    rng = np.random.default_rng(1)
    w0 = rng.normal(size=(4,)).astype("float32")
    grads = [rng.normal(size=(4,)).astype("float32") for _ in range(4)]
    lrs = [0.1, 0.1, 0.01, 0.01]
    expected, _ = _torch_sgd_reference(w0, grads, lrs, 0.9, 0.0)
    var = keras.Variable(w0)
    opt = keras.optimizers.SGD(MultiStepLR(0.1, [1], 2), momentum=0.9)
    for g in grads:
        opt.apply([g], [var])
    assert not np.allclose(var.numpy(), expected[-1], rtol=1e-5)


def test_multistep_lr_per_epoch():
    s = MultiStepLR(0.1, [100, 150], steps_per_epoch=352)
    for step, lr in [(0, 0.1), (352 * 100 - 1, 0.1), (352 * 100, 0.01), (352 * 150, 0.001)]:
        assert float(s(step)) == pytest.approx(lr)
    assert s.epoch_lr(149) == pytest.approx(0.01)


def test_momentum_buffer_errors():
    var = keras.Variable(np.zeros(2, "float32"))
    opt = TorchSGD(0.1)
    with pytest.raises(ValueError, match="no state yet"):
        momentum_buffer(opt, var)
    opt.build([var])
    other = keras.Variable(np.zeros(2, "float32"))
    with pytest.raises(ValueError, match="not optimized"):
        momentum_buffer(opt, other)


@pytest.mark.parametrize("kwargs,match", [({"momentum": 1.0}, "momentum"),
                                          ({"l2": -1.0}, "l2")])
def test_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TorchSGD(0.1, **kwargs)
