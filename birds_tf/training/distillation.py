"""Knowledge distillation from two frozen teachers during PGD-AT (paper Figure 4, "+ KD").

The recipe of Chen et al. 2021 ("Robust overfitting may be mitigated by properly learned
smoothening"; their code ``VITA-Group/Alleviate-Robust-Overfitting``, not the paper's repository;
docs/authors-code.md, "KD and SWA")::

    loss = 0.3 CE(f(x_adv), y) + 0.1 KD(f(x_adv), T_std(x_adv)) + 0.6 KD(f(x_adv), T_adv(x_adv))
    KD(s, t) = T^2 * mean_batch sum_c -softmax(t / T)_c * log_softmax(s / T)_c,   T = 2

``T_std`` is a standard-trained and ``T_adv`` a PGD-trained dense model of the same architecture;
both are frozen and run in inference mode on the adversarial examples crafted against the
student (with the student's plain cross-entropy, as the reference's attack). A teacher is a
``launch.train`` workdir (``checkpoints/best.keras`` or ``final.keras``, see
``KnowledgeDistillation``), a ``.keras`` file, or a SavedModel folder written by
``launch.export`` (``serve`` signature on [0, 1] images -> logits).

Switch it on with ``KnowledgeDistillation.enabled = True`` (see ``birds_tf.experiment.smoothing``);
it applies to the main PGD-AT stage of any method. Pre-training stages of multi-stage methods
(Robust Bird stage 1, OMP pre-training, IWI) keep the plain loss.
"""
import os

import keras
import tensorflow as tf

from birds_tf.training.adversarial import AdversarialModel, cross_entropy
from birds_tf.utils import records
from birds_tf.utils.workdir import Workdir

__all__ = ["DistillationModel", "Teacher", "kd_loss", "load_teacher", "resolve_teacher_path",
           "check_teacher", "CHECKPOINTS"]

CHECKPOINTS = ("best", "final")


def kd_loss(student_logits, teacher_logits, temperature=2.0):
    """Per-example ``T^2 * sum_c -softmax(t/T)_c * log_softmax(s/T)_c`` (mean it over the batch)."""
    s = tf.cast(student_logits, tf.float32) / temperature
    t = tf.stop_gradient(tf.cast(teacher_logits, tf.float32)) / temperature
    return (temperature ** 2) * tf.reduce_sum(-tf.nn.softmax(t, axis=-1) *
                                              tf.nn.log_softmax(s, axis=-1), axis=-1)


class Teacher:
    """A frozen classifier ``[0, 1] images -> logits`` in inference mode, with its shapes."""

    def __init__(self, fn, num_classes, input_shape, source, kind, net=None):
        self._fn = fn
        self.net = net  # the Keras model when loaded from a .keras file (for FLOPs)
        self.num_classes = num_classes
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        self.source = source
        self.kind = kind

    def __call__(self, x):
        return tf.stop_gradient(tf.cast(self._fn(x), tf.float32))


def resolve_teacher_path(path, checkpoint="best", role="teacher"):
    """``(kind, file_or_folder)`` for a workdir, a ``.keras`` file or a SavedModel folder."""
    if checkpoint not in CHECKPOINTS:
        raise ValueError(f"KnowledgeDistillation.{role}_checkpoint must be one of "
                         f"{CHECKPOINTS}, got {checkpoint!r}.")
    if path is None or str(path) == "":
        raise ValueError(f"KD needs the {role} model: set KnowledgeDistillation.{role} to a "
                         "launch.train workdir, a .keras file or an exported SavedModel folder.")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"KD {role} {path!r} does not exist (relative paths are read from the current "
            "folder). Train it first, e.g. python -m launch.train --gin_file=gin/"
            "std_resnet18.gin --workdir=runs/dense_std_resnet18 for the standard teacher.")
    if os.path.isfile(path):
        if not path.endswith(".keras"):
            raise ValueError(f"KD {role} {path!r} is a file but not a .keras model.")
        return "keras", path
    if os.path.exists(os.path.join(path, "saved_model.pb")):
        return "saved_model", path
    model = Workdir(path).checkpoint(checkpoint)
    if os.path.exists(model):
        return "keras", model
    raise FileNotFoundError(
        f"KD {role} {path!r} is neither a SavedModel folder (no saved_model.pb) nor a "
        f"launch.train workdir with {Workdir.checkpoint_name(checkpoint)} (has its training "
        "finished at least one epoch?).")


def load_teacher(path, checkpoint="best", role="teacher", strategy=None):
    kind, where = resolve_teacher_path(path, checkpoint, role)
    strategy = strategy or tf.distribute.get_strategy()
    if kind == "keras":
        records.import_saved_classes(where)  # the masked layers, by name
        with strategy.scope():
            net = keras.models.load_model(where, compile=False)
        net.trainable = False
        return Teacher(lambda x: net(x, training=False), int(net.output_shape[-1]),
                       net.input_shape[1:], where, kind, net=net)
    loaded = tf.saved_model.load(where)
    signature = None
    for name in ("serve", "serving_default"):
        if name in loaded.signatures:
            signature = loaded.signatures[name]
            break
    if signature is None:
        raise ValueError(f"KD {role} SavedModel {where!r} has no 'serve' signature; export it "
                         "with python -m launch.export.")
    inputs = list(signature.structured_input_signature[1].values())
    outputs = list(signature.structured_outputs.values())
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(f"KD {role} SavedModel {where!r}: its 'serve' signature must take one "
                         "image tensor and return one logits tensor.")
    in_name = next(iter(signature.structured_input_signature[1]))
    out_name = next(iter(signature.structured_outputs))

    def call(x, _sig=signature, _keep=loaded):
        return _sig(**{in_name: tf.cast(x, tf.float32)})[out_name]

    return Teacher(call, outputs[0].shape[-1], inputs[0].shape[1:], where, kind)


def check_teacher(teacher, num_classes, input_shape, role="teacher"):
    """Refuse a teacher whose classes or input shape differ from the student's data."""
    if teacher.num_classes is not None and int(teacher.num_classes) != int(num_classes):
        raise ValueError(f"KD {role} {teacher.source!r} predicts {teacher.num_classes} classes "
                         f"but the dataset has {num_classes}; use a teacher trained on the same "
                         "dataset.")
    if teacher.input_shape is not None:
        got = tuple(None if d is None else int(d) for d in teacher.input_shape)
        want = tuple(int(d) for d in input_shape)
        if len(got) != len(want) or any(g is not None and g != w for g, w in zip(got, want)):
            raise ValueError(f"KD {role} {teacher.source!r} takes inputs of shape {got} but the "
                             f"dataset's images have shape {want}.")


class DistillationModel(AdversarialModel):
    """PGD-AT whose per-example loss mixes cross-entropy with KD from frozen teachers.

    ``teachers`` is a sequence of ``(teacher, weight)``: callables ``x -> logits`` (a ``Teacher``,
    a Keras model in inference mode, ...). The teachers are kept out of Keras/TF tracking, so they
    are never trained, never in ``trainable_variables`` and never written into the trainer's
    resume checkpoint. (Not registered for serialization: only the student ``net`` is saved.)
    """

    def __init__(self, net, train_attack=None, seed=None, teachers=(), ce_weight=0.3,
                 temperature=2.0, **kwargs):
        super().__init__(net, train_attack, seed=seed, **kwargs)
        pairs = tuple((t, float(w)) for t, w in teachers if float(w) != 0.0)
        object.__setattr__(self, "_kd_teachers", pairs)
        self.ce_weight = float(ce_weight)
        self.temperature = float(temperature)

    def compute_example_loss(self, x_adv, y, logits):
        logits = tf.cast(logits, tf.float32)
        loss = self.ce_weight * cross_entropy(y, logits)
        for teacher, weight in self._kd_teachers:
            loss += weight * kd_loss(logits, teacher(x_adv), self.temperature)
        return loss
