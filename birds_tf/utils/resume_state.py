"""``ResumeState``: what ``checkpoints/resume/state.json`` holds, as a typed record.

Why a type: the trainer writes the state after every epoch and several layers read it (the main
stage, the methods' ``prepare``, the channel method's shrink, the launcher's changed-config
resume); named attributes replace string keys that could drift. ``from_json``/``to_json``
round-trip a file written before the type existed byte for byte: the key order is kept, a key
absent from the file stays absent, and keys this version does not know are kept as read
(``extra``), so a newer run's state survives an older reader's rewrite.
"""
import dataclasses
import json

__all__ = ["ResumeState"]

# The keys in the order today's writer puts them (``training.resume.ResumeCheckpoint``).
_KEYS = ("stage", "epoch", "checkpoint", "history", "best_val_ra", "callbacks", "pre_stages",
         "partial")


@dataclasses.dataclass
class ResumeState:
    """One resume state. ``None`` means the key is absent from the file (or null there).

    Args:
      stage: ``"main"`` while the main PGD-AT run trains, ``"done"`` once it finished.
      epoch: the completed epochs the checkpoint holds.
      checkpoint: the ``tf.train.Checkpoint`` prefix of the trainer at that point.
      history: the ``metrics.csv`` rows so far.
      best_val_ra: the highest validation RA so far (the best model's).
      callbacks: each stateful callback's ``get_state()``, by class name.
      pre_stages: carried over from the previous state as it is.
      partial: after a SIGTERM mid-epoch: ``{"epoch", "step", "metrics"}`` of the unfinished
        epoch (1-based), the steps done and the trainer's running metric variables.
      extra: keys this version does not know, kept as read.
    """

    stage: str
    epoch: int = None
    checkpoint: str = None
    history: list = None
    best_val_ra: float = None
    callbacks: dict = None
    pre_stages: object = None
    partial: dict = None
    extra: dict = dataclasses.field(default_factory=dict)
    # The file's key order (empty for a new state: extra keys first, then ``_KEYS``' order).
    order: tuple = dataclasses.field(default=(), repr=False, compare=False)

    @classmethod
    def from_dict(cls, values):
        """The state of a parsed ``state.json``; ``ValueError`` when it is not one."""
        if not isinstance(values, dict) or "stage" not in values:
            raise ValueError("it is not a resume state (no 'stage')")
        known = {k: values[k] for k in _KEYS if values.get(k) is not None}
        # unknown keys, and known ones written as null (kept as null; the attribute reads None)
        extra = {k: v for k, v in values.items() if k not in known}
        known.setdefault("stage", None)
        return cls(**known, extra=extra, order=tuple(values))

    @classmethod
    def from_json(cls, text):
        return cls.from_dict(json.loads(text))

    def to_dict(self):
        """The plain dict ``state.json`` holds, in the file's key order."""
        values = dict(self.extra)
        values.update((k, getattr(self, k)) for k in _KEYS if getattr(self, k) is not None)
        ordered = {k: values[k] for k in self.order if k in values}
        ordered.update((k, v) for k, v in values.items() if k not in ordered)
        return ordered

    def to_json(self):
        """``state.json``'s text (NumPy scalars as floats), as the writer has always written it."""
        return json.dumps(self.to_dict(), indent=1, default=float)

    def callback_state(self, name):
        """The saved ``get_state()`` of the callback class ``name``, or ``None``."""
        return (self.callbacks or {}).get(name)

    def update_callback_state(self, name, values):
        """Set entries of the callback class ``name``'s saved state (a model rebuilt between
        epochs records its new structure there); keys it already has keep their place."""
        if self.callbacks is None:
            self.callbacks = {}
        self.callbacks.setdefault(name, {}).update(values)
