"""FLOPs of one image's inference and of a whole (sparse) adversarial training run.

Why this module: the paper's efficiency columns (Table 1, "Training FLOPs" and "Inference
FLOPs") need a per-layer count that follows each layer's mask, and a training count that follows
the density a run really had at every step rather than only its final one.

Conventions (also in docs/flops.md, "What is counted"):

* **MACs** are the multiply-accumulates of conv and dense kernels for one image, without bias
  (the thop convention of the reference, 555.42M for a dense PreActResNet-18 at 32x32). A
  masked layer counts ``nnz(mask) x output positions`` (``nnz(kernel)`` for a plain layer, so an
  exported sparse model counts the same).
* **Inference FLOPs** = 2 x MACs (a multiply and an add). Batch norm, activations, pooling,
  element-wise additions, bias adds and the input normaliser are counted separately, one op per
  arithmetic operation, in ``Count.other`` and are not part of the headline figure (the paper's
  table counts kernels only).
* **Training FLOPs** (measured): backward = 2 x forward, as in the paper; each PGD step is a
  forward plus an input-gradient backward (2F, weight gradients are not needed), the weight
  update is a forward plus a full backward (3F), so one PGD-K step costs (2K + 3) F per image.
  F follows the run's per-layer density at every iteration (``metrics.csv`` per epoch, refined
  by Flying Bird's mask-update events), on the structure each epoch ran on (a run rebuilt
  narrower records ``forward_flops``/``forward_flops_dense`` per epoch; every other run is
  counted on its final structure). Gradient growth costs one extra dense backward (2 F_dense of
  that epoch's structure) per image of the batch at each mask update (an upper bound: only the
  weight-gradient half must be dense); a dense pre-stage (Robust Bird's stage 1, OMP's
  pre-training) costs (2 K1 + 3) F_dense per image and epoch (3 F_dense when clean); a sparse
  fine-tuning pre-stage (IWI's) costs (2 K + 3) F at its masks' per-layer densities.
  Validation/test evaluation is not training and is not counted.
* **Paper convention**: 3 (K + 1) x F_inf(final) x N_train x epochs (= 33 x ... for PGD-10), plus
  3 (K1 + 1) x F_inf(dense) x N_train x E1 for a dense pre-stage (Robust Bird's clean stage 1:
  3 per image; OMP's PGD-10 pre-training: 33), which reproduces the paper's rows (docs/flops.md,
  "Why the two training figures differ"). It assumes the final density held throughout, so it
  misstates Flying Bird+, whose density moves both ways during training (prune-more sparser,
  grow-more denser).
"""
import dataclasses
import math
import os

import keras
import numpy as np

from birds_tf.layers.masked import MASKED_LAYER_TYPES
from birds_tf.layers.normalize import Normalize
from birds_tf.utils import records
from birds_tf.utils.workdir import Workdir

__all__ = ["LayerCount", "Count", "count", "macs_at", "inference_ratio", "training_flops",
           "paper_training_flops", "results_fields", "CONVENTION", "PreStage", "SparseFineTune",
           "MaskUpdates", "MethodCosts"]

CONVENTION = ("inference FLOPs = 2 x conv/dense MACs per image (mask-effective, no bias); "
              "training = sum over steps of (2K+3) x F(step) x images, K PGD steps, backward = "
              "2 x forward, + 2 x F_dense per image at each gradient-growth mask update "
              "+ 3 x F_dense per image per clean stage-1 epoch (+ IWI's sparse fine-tuning at "
              "its own density); paper convention = 3(K+1) x F_inf(final) x N_train x epochs "
              "(+ the pre-stages)")

KERNEL_LAYERS = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D, keras.layers.Dense)
OTHER_KINDS = ("bn", "activation", "pool", "add", "bias", "normalize")


@dataclasses.dataclass
class LayerCount:
    """One call of one layer: kernel MACs (dense and mask-effective) and its other ops."""

    name: str
    kind: str
    macs_dense: int = 0
    macs: float = 0
    weights: int = 0          # kernel size (maskable weights)
    nnz: int = 0              # active kernel weights
    positions: int = 0        # output positions each kernel weight is applied at
    other: dict = dataclasses.field(default_factory=dict)

    @property
    def density(self):
        return self.nnz / self.weights if self.weights else 1.0


@dataclasses.dataclass
class Count:
    """Per-layer counts and totals for one image's forward pass."""

    layers: list
    uncounted: list = dataclasses.field(default_factory=list)

    @property
    def macs(self):
        return float(sum(layer.macs for layer in self.layers))

    @property
    def macs_dense(self):
        return int(sum(layer.macs_dense for layer in self.layers))

    @property
    def flops(self):
        """Inference FLOPs of one image: 2 x mask-effective MACs."""
        return 2.0 * self.macs

    @property
    def flops_dense(self):
        return 2.0 * self.macs_dense

    @property
    def other(self):
        totals = dict.fromkeys(OTHER_KINDS, 0)
        for layer in self.layers:
            for kind, ops in layer.other.items():
                totals[kind] = totals.get(kind, 0) + ops
        return totals

    @property
    def total_flops(self):
        """2 x MACs plus every other op (BN, activations, pooling, additions, bias)."""
        return self.flops + float(sum(self.other.values()))

    @property
    def density(self):
        weights = sum(layer.weights for layer in self.layers)
        return sum(layer.nnz for layer in self.layers) / weights if weights else 1.0

    def as_dict(self):
        return {"macs": self.macs, "macs_dense": self.macs_dense, "flops": self.flops,
                "flops_dense": self.flops_dense, "other_ops": self.other,
                "total_flops": self.total_flops, "density": self.density,
                "layers": [dict(dataclasses.asdict(layer), density=layer.density)
                           for layer in self.layers if layer.weights]}


# -- counting -------------------------------------------------------------------------------------

def count(model):
    """Per-layer MACs and other ops of ``model`` for one image (functional or Sequential)."""
    layers, uncounted = [], []
    for node in _nodes(model):
        _count_node(node, layers, uncounted)
    return Count(layers, uncounted)


def _nodes(model):
    graph = model._functional if isinstance(model, keras.Sequential) else model
    by_depth = getattr(graph, "_nodes_by_depth", None)
    if by_depth is None:
        raise ValueError(f"count() needs a built functional or Sequential model with a known "
                         f"input shape; {getattr(model, 'name', model)!r} has no layer graph "
                         "(build it on keras.Input(...) first).")
    for depth in sorted(by_depth, reverse=True):  # the highest depth is nearest the inputs
        yield from by_depth[depth]


def _shape(tensor):
    return tuple(int(d) for d in tensor.shape[1:])


def _count_node(node, layers, uncounted):
    layer = node.operation
    if isinstance(layer, keras.layers.InputLayer) or not node.outputs:
        return
    if isinstance(layer, keras.Model):
        for inner in _nodes(layer):
            _count_node(inner, layers, uncounted)
        return
    inputs = [_shape(t) for t in node.arguments.keras_tensors]
    out = _shape(node.outputs[0])
    size = math.prod(out)
    entry = LayerCount(layer.name, type(layer).__name__)
    if isinstance(layer, KERNEL_LAYERS):
        kernel = np.asarray(layer.kernel.numpy())
        if isinstance(layer, MASKED_LAYER_TYPES):
            nnz = int(np.count_nonzero(np.asarray(layer.mask.numpy())))
        else:
            nnz = int(np.count_nonzero(kernel))
        # Output positions each kernel weight is used at: H x W for a conv, the leading
        # dimensions (1 for a plain vector) for a dense layer.
        if isinstance(layer, keras.layers.Dense):
            positions = size // out[-1]
        elif layer.data_format == "channels_last":
            positions = math.prod(out[:-1])
        else:
            positions = math.prod(out[1:])
        entry.weights, entry.nnz, entry.positions = kernel.size, nnz, positions
        entry.macs_dense, entry.macs = kernel.size * positions, nnz * positions
        if layer.use_bias:
            entry.other["bias"] = size
        if _activation_ops(layer):
            entry.other["activation"] = size
    elif isinstance(layer, keras.layers.BatchNormalization):
        entry.other["bn"] = 2 * size  # scale and shift once folded for inference
    elif isinstance(layer, (keras.layers.ReLU, keras.layers.Activation, keras.layers.LeakyReLU,
                            keras.layers.Softmax, keras.layers.ELU, keras.layers.PReLU)):
        entry.other["activation"] = size
    elif isinstance(layer, (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D,
                            keras.layers.GlobalAveragePooling1D)):
        entry.other["pool"] = math.prod(inputs[0])
    elif isinstance(layer, (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)):
        entry.other["pool"] = size * math.prod(layer.pool_size)
    elif isinstance(layer, (keras.layers.Add, keras.layers.Subtract, keras.layers.Multiply,
                            keras.layers.Average, keras.layers.Maximum)):
        entry.other["add"] = size * (len(inputs) - 1)
    elif isinstance(layer, Normalize):
        entry.other["normalize"] = 2 * size
    elif layer.weights:
        uncounted.append(layer.name)  # a weighted layer this counter does not know
    layers.append(entry)


def _activation_ops(layer):
    activation = getattr(layer, "activation", None)
    return activation is not None and getattr(activation, "__name__", "") != "linear"


def macs_at(counted, layer_densities=None, global_density=None):
    """MACs of ``counted`` with other per-layer densities (keyed by layer name).

    Layers missing from ``layer_densities`` keep their current density; ``global_density`` scales
    the current per-layer mix so that the active weights match it (used when a run logged only
    its global density).
    """
    if layer_densities:
        return float(sum(layer.macs_dense * layer_densities.get(layer.name, layer.density)
                         for layer in counted.layers))
    if global_density is not None and counted.density > 0:
        return counted.macs * float(global_density) / counted.density
    return counted.macs


def inference_ratio(counted, layer_densities=None, convention="macs"):
    """Inference FLOPs relative to the dense model, under one of two per-layer conventions.

    ``"macs"`` (birds-tf's): ``sum_l d_l x MACs_l / sum_l MACs_l``, each weight counted at every
    output position. ``"paper"``: each weight counted once per output *column*
    (``sqrt(positions)`` of a square map), ``sum_l d_l n_l sqrt(P_l) / sum_l n_l sqrt(P_l)``.
    Why the second: the paper's inference-FLOPs ratios for non-uniform masks (IGQ / Flying Bird,
    ResNet-18: 80.60 / 260.07 = 0.310 at 80%, 47.51 / 260.07 = 0.183 at 90%, and the CIFAR-100
    and Tiny-ImageNet rows) are reproduced to 3-4 digits by it and not by the MAC count (0.516,
    0.357); see docs/flops.md, "The paper's inference column". ``layer_densities`` as in ``macs_at``
    (default: the current masks).
    """
    if convention not in ("macs", "paper"):
        raise ValueError(f"Unknown FLOPs convention {convention!r}; allowed: 'macs', 'paper'.")
    num = den = 0.0
    for layer in counted.layers:
        if not layer.weights:
            continue
        density = (layer_densities or {}).get(layer.name, layer.density)
        per_weight = layer.positions if convention == "macs" else math.sqrt(layer.positions)
        num += density * layer.weights * per_weight
        den += layer.weights * per_weight
    return num / den if den else 1.0


def _recorded(row, key):
    """``row[key]`` as a float, ``None`` when the row has no such entry (or an empty one)."""
    value = row.get(key)
    if value is None or value == "":
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _row_macs(counted, row):
    """Forward MACs of one image at the end of the epoch ``row`` describes.

    A run rebuilt narrower during training (``fb_plus_channel``) records the forward FLOPs of
    the structure each epoch ran on (``forward_flops``, ``forward_flops_dense``); where that
    structure is not the final one, its recorded count is the epoch's. Every other row is
    counted on the final structure at the row's per-layer densities, as before.
    """
    dense = _recorded(row, "forward_flops_dense")
    flops = _recorded(row, "forward_flops")
    if dense is not None and flops is not None and dense != counted.flops_dense:
        return flops / 2.0
    per_layer = {key[len("density/"):]: float(value) for key, value in row.items()
                 if key.startswith("density/")}
    if per_layer:
        return macs_at(counted, per_layer)
    if "density" in row:
        return macs_at(counted, global_density=float(row["density"]))
    return counted.macs


# -- training -------------------------------------------------------------------------------------

def training_flops(counted, history, num_train, batch_size, pgd_steps=10, events=None,
                   gradient_growth=False, stage1_epochs=0, stage1_pgd_steps=0,
                   initial_densities=None, finetune_epochs=0, finetune_pgd_steps=0,
                   finetune_densities=None):
    """Measured training FLOPs of a run, integrated over its per-step density.

    ``history``: the per-epoch metric rows (``metrics.csv``), ``density/<layer>`` columns used
    when present, ``forward_flops`` (and ``forward_flops_dense``) where a row's structure is not
    ``counted``'s (a run rebuilt narrower during training); ``events``: Flying Bird's mask
    updates (``step`` = the iteration after which the masks changed, ``nnz_after`` = active
    weights afterwards); ``initial_densities``: the per-layer densities before the first
    iteration (``masks/epoch_000.npz``);
    ``finetune_*``: a sparse pre-stage (IWI's fine-tuning of the pruned net) of that many epochs
    at those per-layer densities, (2 K_ft + 3) F_sparse per image and epoch. Returns a dict of
    totals: ``adversarial``, ``mask_updates``, ``stage1``, ``finetune`` and ``total``.
    """
    if not history:
        raise ValueError("training_flops needs at least one epoch of metric history.")
    steps = math.ceil(num_train / batch_size)
    last = num_train - (steps - 1) * batch_size
    per_image = 2 * int(pgd_steps) + 3
    events = sorted(events or [], key=lambda e: int(e["step"]))
    by_epoch = {}
    for event in events:
        by_epoch.setdefault((int(event["step"]) - 1) // steps, []).append(event)

    def images(index):  # 0-based index of the step within its epoch
        return last if index == steps - 1 else batch_size

    adversarial = 0.0
    previous = None
    for e, row in enumerate(history):
        end = _row_macs(counted, row)
        start = previous
        if start is None:
            start = macs_at(counted, initial_densities) if initial_densities else end
        epoch_events = by_epoch.get(e, [])
        first_step = e * steps + 1
        if not epoch_events:
            adversarial += end * num_train
        else:
            nnz_end = float(epoch_events[-1]["nnz_after"]) or 1.0
            if previous is None and not initial_densities:
                start = end * float(epoch_events[0]["nnz_before"]) / nnz_end
            current, seen = start, 0
            for i in range(steps):
                step = first_step + i
                adversarial += current * images(i)
                while seen < len(epoch_events) and int(epoch_events[seen]["step"]) <= step:
                    seen += 1
                    current = end if seen == len(epoch_events) else \
                        end * float(epoch_events[seen - 1]["nnz_after"]) / nnz_end
        previous = end
    adversarial *= 2.0 * per_image  # MACs -> FLOPs, then (2K + 3) forward-equivalents
    mask_updates = 0.0
    if gradient_growth:
        for event in events:
            index = (int(event["step"]) - 1) % steps
            epoch = min((int(event["step"]) - 1) // steps, len(history) - 1)
            mask_updates += 2.0 * _row_dense_flops(counted, history[epoch]) * images(index)
    stage1 = (3.0 + 2.0 * stage1_pgd_steps) * counted.flops_dense * num_train * stage1_epochs
    finetune = 0.0
    if finetune_epochs:
        if finetune_densities is None:
            raise ValueError("A sparse fine-tuning stage needs its per-layer densities.")
        finetune = (3.0 + 2.0 * finetune_pgd_steps) * 2.0 * \
            macs_at(counted, finetune_densities) * num_train * finetune_epochs
    return {"adversarial": adversarial, "mask_updates": mask_updates, "stage1": stage1,
            "finetune": finetune, "total": adversarial + mask_updates + stage1 + finetune}


def _row_dense_flops(counted, row):
    """Dense forward FLOPs of the structure the row's epoch ran on (recorded by a run rebuilt
    narrower during training; else the final structure's)."""
    dense = _recorded(row, "forward_flops_dense")
    return counted.flops_dense if dense is None else dense


def paper_training_flops(inference_flops, num_train, epochs, pgd_steps=10, stage1_epochs=0,
                         dense_inference_flops=None, stage1_pgd_steps=0, finetune_epochs=0,
                         finetune_inference_flops=None, finetune_pgd_steps=0):
    """The paper's Table 1 relation: 3 (K+1) x F_inf x N x epochs (33 x ... for PGD-10).

    A dense pre-stage (Robust Bird's clean stage 1, OMP's PGD pre-training) adds
    3 (K1+1) x F_inf(dense) x N x E1: 3 per image for clean training, 33 for PGD-10, which
    reproduces the paper's RB and OMP rows (docs/flops.md). A sparse fine-tuning stage
    (IWI's; no paper row) adds 3 (K_ft+1) x F_inf(fine-tuned sparse net) x N x E_ft.
    """
    total = 3.0 * (int(pgd_steps) + 1) * float(inference_flops) * num_train * epochs
    if stage1_epochs:
        if dense_inference_flops is None:
            raise ValueError("A dense pre-stage needs the dense model's inference FLOPs.")
        total += 3.0 * (int(stage1_pgd_steps) + 1) * float(dense_inference_flops) * \
            num_train * stage1_epochs
    if finetune_epochs:
        if finetune_inference_flops is None:
            raise ValueError("A sparse fine-tuning stage needs its inference FLOPs.")
        total += 3.0 * (int(finetune_pgd_steps) + 1) * float(finetune_inference_flops) * \
            num_train * finetune_epochs
    return total


# -- results.json ---------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class PreStage:
    """Dense training before the protocol's run (Robust Bird stage 1, OMP, IWI stage A).

    Args:
      epochs: epochs it ran (Robust Bird's stop at the ticket).
      pgd_steps: attack steps per example (0: clean training, 1: Fast-AT).
    """

    epochs: float = 0
    pgd_steps: int = 0


@dataclasses.dataclass(frozen=True)
class SparseFineTune:
    """A sparse pre-stage (IWI's fine-tuning of the pruned net).

    Args:
      epochs: epochs it ran.
      pgd_steps: attack steps per example.
      densities: ``{layer: density}`` of the fine-tuned net.
    """

    epochs: float
    pgd_steps: int
    densities: dict


@dataclasses.dataclass(frozen=True)
class MaskUpdates:
    """Flying Bird's mask updates during the run.

    Args:
      events: ``[{"step", "nnz_before", "nnz_after", ...}]`` in order (``DynamicSparsity.events``).
      gradient_growth: growth read dense gradients (one extra dense backward per update).
    """

    events: tuple = ()
    gradient_growth: bool = False


@dataclasses.dataclass(frozen=True)
class MethodCosts:
    """What a method plug-in tells the FLOPs accounting beyond the main run's metric history."""

    pre_stage: PreStage = PreStage()
    finetune: SparseFineTune = None
    mask_updates: MaskUpdates = MaskUpdates()


def _initial_densities(counted, masks):
    """Per-layer densities of the initial masks for ``macs_at`` on the final structure.

    A run that started wider than it ended (channels removed and the model rebuilt narrower)
    gets ``nnz / final kernel size`` per layer, so that ``macs_at`` gives ``nnz x positions``,
    the initial masks' own MACs (removing channels changes no layer's output positions).
    """
    weights = {layer.name: layer.weights for layer in counted.layers if layer.weights}
    if all(mask.size == weights.get(name, mask.size) for name, mask in masks.items()):
        return {name: float(mask.mean()) for name, mask in masks.items()}
    return {name: (float(np.count_nonzero(mask)) / weights[name] if name in weights
                   else float(mask.mean())) for name, mask in masks.items()}


def results_fields(net, history, config, splits, costs=None, masks_dir=None):
    """The FLOPs keys ``train_eval`` adds to ``results.json`` for the final ``net``.

    Args:
      net: the trained classifier (its masks give the final densities).
      history: the protocol's metric rows (``metrics.csv``).
      config: the run's ``Config`` (batch size and training attack).
      splits: the run's data (``num_train``).
      costs: the method's ``MethodCosts`` (pre-stages, fine-tuning, mask updates).
      masks_dir: the workdir's ``masks`` folder (its ``epoch_000.npz`` is the initial mask).
    """
    costs = costs or MethodCosts()
    counted = count(net)
    main = [row for row in history if row.get("stage") == history[-1].get("stage")]
    pgd_steps = 0 if config.train_attack().clean else int(config.train_steps)
    stage1 = float(costs.pre_stage.epochs or 0)
    stage1_pgd = int(costs.pre_stage.pgd_steps or 0)
    initial = None
    first = os.path.join(masks_dir, Workdir.mask_file_name(0)) if masks_dir else None
    if first and os.path.exists(first):
        initial = _initial_densities(counted, records.load_mask_file(first))
    finetune = {}
    if costs.finetune is not None:
        finetune = dict(finetune_epochs=float(costs.finetune.epochs or 0),
                        finetune_pgd_steps=int(costs.finetune.pgd_steps or 0),
                        finetune_densities={k: float(v) for k, v in
                                            costs.finetune.densities.items()})
    measured = training_flops(
        counted, main, splits.num_train, config.batch_size, pgd_steps,
        events=list(costs.mask_updates.events),
        gradient_growth=costs.mask_updates.gradient_growth, stage1_epochs=stage1,
        stage1_pgd_steps=stage1_pgd, initial_densities=initial, **finetune)
    paper = paper_training_flops(
        counted.flops, splits.num_train, len(main), pgd_steps, stage1, counted.flops_dense,
        stage1_pgd, finetune.get("finetune_epochs", 0),
        2.0 * macs_at(counted, finetune["finetune_densities"]) if finetune else None,
        finetune.get("finetune_pgd_steps", 0))
    return {
        "inference_flops": counted.flops,
        "inference_flops_dense": counted.flops_dense,
        "training_flops": measured["total"],
        "training_flops_paper_convention": paper,
        "flops": {"convention": CONVENTION, "macs": counted.macs,
                  "macs_dense": counted.macs_dense, "other_ops": counted.other,
                  "training": measured, "num_train": splits.num_train,
                  "batch_size": config.batch_size,
                  "steps_per_epoch": math.ceil(splits.num_train / config.batch_size),
                  "pgd_steps": pgd_steps, "stage1_epochs": stage1,
                  "finetune_epochs": finetune.get("finetune_epochs", 0)},
    }
