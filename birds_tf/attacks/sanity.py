"""Warnings that a robustness number may be an artefact (gradient masking, random outputs, ...).

AutoAttack's own checks (random outputs across calls, probabilities instead of logits, zero
gradients, too few classes for the targets, Square beating the white-box attacks) plus ours:
a weaker attack beating a stronger one, robust accuracy not falling as eps grows, and robust
accuracy above zero at a large eps. Each check returns a list of warning strings (empty when all
is well) and logs every warning through absl logging; none of them raises.
"""
import numpy as np
import tensorflow as tf
from absl import logging as absl_logging

from birds_tf.attacks import _common

# (weaker, stronger): the stronger should never leave more examples robust than the weaker.
# AutoAttack contains APGD-CE/APGD-T/FAB-T/Square, so it is below them by construction; a
# black-box Square beating gradient attacks, or PGD-20 beating AutoAttack, hints at masking.
STRENGTH_ORDER = (
    ("pgd20", "autoattack"), ("cw_inf", "autoattack"), ("apgd_ce", "autoattack"),
    ("apgd_t", "autoattack"), ("fab_t", "autoattack"), ("square", "autoattack"),
    ("pgd20", "apgd_ce"), ("square", "pgd20"), ("square", "apgd_ce"),
)


def _emit(messages):
    for msg in messages:
        absl_logging.warning("robustness sanity check: %s", msg)
    return list(messages)


def check_randomized(model, x, n=5, alpha=1e-4):
    """Warn when repeated forward passes disagree (a randomised defence needs EOT attacks)."""
    x = tf.convert_to_tensor(x, tf.float32)
    outs = []
    for _ in range(n):
        out = tf.cast(model(x, training=False), tf.float32).numpy()
        outs.append(out / (np.linalg.norm(out, axis=-1, keepdims=True) + 1e-10))
    diff = max(float(np.linalg.norm(a - b, axis=-1).max()) for i, a in enumerate(outs)
               for b in outs[i + 1:])
    preds = {tuple(o.argmax(-1)) for o in outs}
    msgs = []
    if diff > alpha or len(preds) > 1:
        msgs.append(f"model outputs change across calls on the same input (max normalised "
                    f"difference {diff:.3g}): it looks randomised, so fixed-input attacks "
                    "overestimate robustness; use expectation over transformation.")
    return _emit(msgs)


def check_range_output(model, x, alpha=1e-5):
    """Warn when the model seems to output probabilities: attacks need logits."""
    out = _common.logits_of(model, x).numpy()
    msgs = []
    if (out.max() < 1 + alpha and out.min() > -alpha
            and np.all(np.abs(out.sum(-1) - 1) < alpha)):
        msgs.append("the model output looks like a probability distribution; attacks and "
                    "the DLR loss expect logits.")
    return _emit(msgs)


def check_zero_gradients(model, x, y):
    """Warn when the loss gradient w.r.t. the input is exactly zero (a masking symptom)."""
    x, y = _common.as_inputs(x, y)
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = tf.cast(model(x, training=False), tf.float32)
        loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
    grad = tape.gradient(loss, x, unconnected_gradients=_common.ZERO_GRAD)
    n_zero = int(np.sum(np.abs(grad.numpy().reshape(grad.shape[0], -1)).sum(-1) == 0))
    msgs = []
    if n_zero:
        msgs.append(f"{n_zero} of {int(x.shape[0])} points have a zero input gradient; "
                    "gradient-based attacks are unreliable there.")
    return _emit(msgs)


def check_n_classes(n_classes, attacks, apgd_targets=9, fab_targets=9):
    """Warn when targeted attacks ask for more targets than the model has classes."""
    msgs = []
    if "apgd-t" in attacks and n_classes < 4:
        msgs.append(f"with {n_classes} classes the targeted DLR loss of APGD-T is undefined.")
    if "apgd-t" in attacks and apgd_targets + 1 > n_classes:
        msgs.append(f"APGD-T asks for {apgd_targets} target classes but only {n_classes - 1} "
                    "exist.")
    if "fab-t" in attacks and fab_targets + 1 > n_classes:
        msgs.append(f"FAB-T asks for {fab_targets} target classes but only {n_classes - 1} "
                    "exist.")
    return _emit(msgs)


def check_square_sr(robust_accuracy_after, alpha=0.2):
    """AutoAttack's check: Square lowering robust accuracy after the white-box attacks (percent)."""
    ra = dict(robust_accuracy_after)
    msgs = []
    if "square" in ra and len(ra) > 2:
        best_other = min(v for k, v in ra.items() if k != "square")
        if ra["square"] < best_other - alpha:
            msgs.append(f"Square decreased robust accuracy by {best_other - ra['square']:.2f} "
                        "points after the gradient attacks: gradients may be masked.")
    return _emit(msgs)


def check_attack_strength(results, order=STRENGTH_ORDER, tol=0.0):
    """Warn when a weaker attack leaves fewer robust examples than a stronger one.

    ``results`` maps attack names to robust accuracy in percent (or ``run_attack`` dicts), all on
    the same examples and eps.
    """
    ra = {k: (v["robust_accuracy"] if isinstance(v, dict) else float(v))
          for k, v in results.items()}
    msgs = []
    for weak, strong in order:
        if weak in ra and strong in ra and ra[weak] < ra[strong] - tol:
            msgs.append(f"weaker attack {weak} ({ra[weak]:.2f}%) beats stronger attack {strong} "
                        f"({ra[strong]:.2f}%): the stronger attack is failing, a sign of "
                        "gradient masking or a broken attack.")
    return _emit(msgs)


def check_eps_monotone(eps_values, robust_accuracies, tol=0.0):
    """Warn when robust accuracy rises with eps, or does not fall at all over the sweep."""
    pairs = sorted(zip((float(e) for e in eps_values), (float(r) for r in robust_accuracies)))
    msgs = []
    for (e0, r0), (e1, r1) in zip(pairs, pairs[1:]):
        if r1 > r0 + tol:
            msgs.append(f"robust accuracy rises from {r0:.2f}% at eps={e0:.4g} to {r1:.2f}% at "
                        f"eps={e1:.4g}: a larger ball must not be harder to attack.")
    if len(pairs) > 1 and pairs[0][1] > 0 and pairs[-1][1] >= pairs[0][1]:
        msgs.append(f"robust accuracy does not fall as eps grows from {pairs[0][0]:.4g} to "
                    f"{pairs[-1][0]:.4g} ({pairs[0][1]:.2f}% -> {pairs[-1][1]:.2f}%).")
    return _emit(msgs)


def check_large_eps(model, x, y, eps=0.5, steps=50, max_robust_accuracy=0.0, seed=0):
    """Warn when PGD at a large eps (half the pixel range by default) leaves examples robust.

    With such a ball an attack can paint over the image; a gradient attack that still fails is
    being misled (masked, shattered or zero gradients). Returns warnings; the robust accuracy
    (percent) is in the message.
    """
    from birds_tf.attacks.pgd_restarts import pgd_restarts
    eps = _common.check_eps(eps)
    x, y = _common.as_inputs(x, y)
    adv = pgd_restarts(model, x, y, eps=eps, step_size=2.5 * eps / steps, steps=steps,
                       restarts=1, seed=seed)
    ra = 100.0 * float(np.mean(_common.predict_labels(model, adv).numpy() == y.numpy()))
    msgs = []
    if ra > max_robust_accuracy:
        msgs.append(f"robust accuracy stays at {ra:.2f}% under PGD with a large eps={eps:.4g}: "
                    "gradients are probably masked.")
    return _emit(msgs)


def sanity_checks(model, x, y, results=None, eps_sweep=None, large_eps=0.5, n_calls=5):
    """All checks that apply to what is given; returns the list of warnings.

    ``results``: attack name -> robust accuracy (percent) on ``x``; ``eps_sweep``: eps -> robust
    accuracy; ``large_eps=None`` skips the (more expensive) large-eps attack.
    """
    msgs = check_randomized(model, x, n=n_calls)
    msgs += check_range_output(model, x)
    msgs += check_zero_gradients(model, x, y)
    if results:
        msgs += check_attack_strength(results)
    if eps_sweep:
        msgs += check_eps_monotone(list(eps_sweep), list(eps_sweep.values()))
    if large_eps is not None:
        msgs += check_large_eps(model, x, y, eps=large_eps)
    return msgs
