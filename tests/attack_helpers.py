"""Shared fixtures for the attack tests: tiny models trained on sklearn digits, and NumPy
reference implementations (used only here) of CW-L2 and APGD on a one-hidden-layer MLP whose
input gradient is written out by hand, so they share no code with birds_tf.attacks."""
import functools

import keras
import numpy as np
from sklearn.datasets import load_digits

N_TRAIN = 1400


@functools.lru_cache(maxsize=None)
def digits():
    """8x8x1 images in [0, 1] and int32 labels."""
    d = load_digits()
    return (d.images / 16.0).astype("float32")[..., None], d.target.astype("int32")


def eval_split(n=300):
    x, y = digits()
    return x[N_TRAIN:N_TRAIN + n], y[N_TRAIN:N_TRAIN + n]


@functools.lru_cache(maxsize=None)
def conv_model(seed=0):
    """A small conv net (about 90% test accuracy, not robust): attacks have something to find."""
    keras.utils.set_random_seed(seed)
    x, y = digits()
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(16, 3, activation="relu", padding="same"),
        keras.layers.Flatten(),
        keras.layers.Dense(32, activation="relu"),
        keras.layers.Dense(10)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x[:N_TRAIN], y[:N_TRAIN], epochs=15, batch_size=64, verbose=0)
    return model


@functools.lru_cache(maxsize=None)
def mlp_model(seed=0):
    keras.utils.set_random_seed(seed)
    x, y = digits()
    model = keras.Sequential([
        keras.Input((8, 8, 1)), keras.layers.Flatten(),
        keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x[:N_TRAIN], y[:N_TRAIN], epochs=15, batch_size=64, verbose=0)
    return model


class NumpyMLP:
    """The same MLP in NumPy (float64), with hand-written input gradients."""

    def __init__(self, model):
        dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
        (self.w1, self.b1), (self.w2, self.b2) = [
            [np.asarray(v, np.float64) for v in layer.get_weights()] for layer in dense]

    def logits(self, x):
        h = np.maximum(x.reshape(len(x), -1) @ self.w1 + self.b1, 0)
        return h @ self.w2 + self.b2

    def input_grad(self, x, dz):
        """d(sum_i dz_i . z_i)/dx for per-example logit cotangents dz."""
        pre = x.reshape(len(x), -1) @ self.w1 + self.b1
        return (((dz @ self.w2.T) * (pre > 0)) @ self.w1.T).reshape(x.shape)


def _ce_and_dz(z, y):
    z = z - z.max(1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    rows = np.arange(len(y))
    loss = -np.log(p[rows, y])
    dz = p.copy()
    dz[rows, y] -= 1
    return loss, dz


def _dlr_targeted_and_dz(z, y, t):
    rows = np.arange(len(y))
    order = np.argsort(z, 1)
    s1, s3, s4 = order[:, -1], order[:, -3], order[:, -4]
    den = z[rows, s1] - 0.5 * (z[rows, s3] + z[rows, s4]) + 1e-12
    num = z[rows, y] - z[rows, t]
    loss = -num / den
    dz = np.zeros_like(z)
    np.add.at(dz, (rows, y), -1 / den)
    np.add.at(dz, (rows, t), 1 / den)
    dden = num / den ** 2
    np.add.at(dz, (rows, s1), dden)
    np.add.at(dz, (rows, s3), -0.5 * dden)
    np.add.at(dz, (rows, s4), -0.5 * dden)
    return loss, dz


def apgd_reference(net, x, y, x_init, eps, n_iter, loss="ce", y_target=None, rho=0.75):
    """Croce & Hein's APGD, L-inf, one run, written example-by-example from the paper's algorithm
    and the authors' released loop. Returns (robust flags, adversarial-or-start points)."""
    x = x.astype(np.float64)

    def evaluate(xa):
        z = net.logits(xa)
        if loss == "ce":
            value, dz = _ce_and_dz(z, y)
        else:
            value, dz = _dlr_targeted_and_dz(z, y, y_target)
        return value, net.input_grad(xa, dz), z.argmax(1) == y

    def proj(v):
        return np.clip(np.minimum(np.maximum(v, x - eps), x + eps), 0, 1)

    n = len(x)
    ck_len, ck_min, ck_decr = max(int(0.22 * n_iter), 1), max(int(0.06 * n_iter), 1), \
        max(int(0.03 * n_iter), 1)
    x_adv = np.clip(x_init.astype(np.float64), 0, 1)
    value, grad, acc = evaluate(x_adv)
    x_best, grad_best, loss_best = x_adv.copy(), grad.copy(), value.copy()
    x_best_adv = x_adv.copy()
    step = np.full(n, 2.0 * eps)
    history = np.zeros((n_iter, n))
    x_prev = x_adv.copy()
    since, k = 0, ck_len
    best_at_check, halved_at_check = loss_best.copy(), np.ones(n, bool)
    for i in range(n_iter):
        momentum = x_adv - x_prev
        x_prev = x_adv.copy()
        a = 0.75 if i > 0 else 1.0
        s = step.reshape(-1, 1, 1, 1)
        z = proj(x_adv + s * np.sign(grad))
        x_adv = proj(x_adv + a * (z - x_adv) + (1 - a) * momentum)
        value, grad, ok = evaluate(x_adv)
        acc &= ok
        x_best_adv[~ok] = x_adv[~ok]
        history[i] = value
        up = value > loss_best
        x_best[up], grad_best[up], loss_best[up] = x_adv[up], grad[up], value[up]
        since += 1
        if since == k:
            rises = np.zeros(n)
            for back in range(k):  # Python's negative index wraps like the original's
                rises += history[i - back] > history[i - back - 1]
            halve = (rises <= k * rho) | (~halved_at_check & (best_at_check >= loss_best))
            halved_at_check, best_at_check = halve.copy(), loss_best.copy()
            step[halve] /= 2
            x_adv[halve], grad[halve] = x_best[halve], grad_best[halve]
            k = max(k - ck_decr, ck_min)
            since = 0
    return acc, x_best_adv


def cw_l2_reference(net, x, y, c, steps, lr, confidence=0.0):
    """Carlini-Wagner L2, one binary-search step, Adam in tanh space; failures return x."""
    x = x.astype(np.float64)
    w = np.arctanh((2 * x - 1) * 0.999999)
    x_ref = (np.tanh(w) + 1) / 2
    m, v = np.zeros_like(w), np.zeros_like(w)
    best_l2 = np.full(len(x), np.inf)
    best = x.copy()
    rows = np.arange(len(y))

    def judge(xn, z):
        l2 = ((xn - x_ref) ** 2).reshape(len(x), -1).sum(1)
        other = np.where(np.eye(z.shape[1])[y] > 0, -np.inf, z).max(1)
        better = (other > z[rows, y] + confidence) & (l2 < best_l2)
        best_l2[better] = l2[better]
        best[better] = xn[better]
        return other

    for t in range(1, steps + 1):
        xn = (np.tanh(w) + 1) / 2
        z = net.logits(xn)
        other = judge(xn, z)
        j = np.where(np.eye(z.shape[1])[y] > 0, -np.inf, z).argmax(1)
        active = z[rows, y] - other > -confidence  # the hinge is not flat
        dz = np.zeros_like(z)
        dz[rows, y] += c * active
        dz[rows, j] -= c * active
        dx = 2 * (xn - x_ref) + net.input_grad(xn, dz)
        g = dx * (1 - np.tanh(w) ** 2) / 2
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g ** 2
        w = w - lr * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t) * m / (np.sqrt(v) + 1e-8)
    xn = (np.tanh(w) + 1) / 2
    judge(xn, net.logits(xn))
    return best


def art_classifier(model):
    """ART's TF2 classifier around the Keras 3 model (ART 1.20 accepts it directly)."""
    from art.estimators.classification import TensorFlowV2Classifier
    return TensorFlowV2Classifier(
        model=model, nb_classes=10, input_shape=(8, 8, 1), clip_values=(0.0, 1.0),
        loss_object=keras.losses.CategoricalCrossentropy(from_logits=True))
