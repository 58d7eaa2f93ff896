"""``ResumeState``: state.json files written before the type existed round-trip byte for byte."""
import json

import numpy as np
import pytest

from birds_tf.utils.resume_state import ResumeState

# As the writer before ResumeState wrote them: ``json.dumps(state, indent=1)`` of the dict built
# by ``ResumeCheckpoint._state`` (extra keys, then stage .. callbacks, pre_stages, partial).
MID_EPOCH = """{
 "stage": "main",
 "epoch": 1,
 "checkpoint": "w/checkpoints/resume/preempted-2-1",
 "history": [
  {
   "epoch": 1,
   "lr": 0.1,
   "val_ra": 12.5,
   "density/conv1": 0.2
  }
 ],
 "best_val_ra": 12.5,
 "callbacks": {
  "DynamicSparsity": {
   "step": 3,
   "rng": {"bit_generator": "PCG64", "state": {"state": 1, "inc": 3}}
  }
 },
 "partial": {
  "epoch": 2,
  "step": 1,
  "metrics": [
   0.5,
   [
    1.0,
    2.0
   ]
  ]
 }
}"""
# ``mark_done`` on a workdir without a state: ``{}`` then stage and history.
DONE_FROM_NOTHING = {"stage": "done", "history": []}
# A newer writer's key first, pre_stages carried over, a known key written as null.
WITH_EXTRAS = {"method_extra": {"a": 1}, "stage": "main", "epoch": 3, "checkpoint": "c/ckpt-3",
               "history": [], "best_val_ra": -1.0, "callbacks": {}, "pre_stages": ["stage1"],
               "partial": None}


@pytest.mark.parametrize("text", [
    json.dumps(json.loads(MID_EPOCH), indent=1), json.dumps(DONE_FROM_NOTHING, indent=1),
    json.dumps(WITH_EXTRAS, indent=1)], ids=["mid_epoch", "done", "extras"])
def test_an_old_state_json_round_trips_byte_for_byte(text):
    state = ResumeState.from_json(text)
    assert state.to_json() == text
    assert ResumeState.from_json(state.to_json()) == state


def test_attributes_are_the_files_keys():
    state = ResumeState.from_json(MID_EPOCH)
    raw = json.loads(MID_EPOCH)
    assert (state.stage, state.epoch, state.checkpoint) == ("main", 1, raw["checkpoint"])
    assert state.history == raw["history"] and state.best_val_ra == 12.5
    assert state.partial == {"epoch": 2, "step": 1, "metrics": [0.5, [1.0, 2.0]]}
    assert state.callback_state("DynamicSparsity")["step"] == 3
    assert state.callback_state("Other") is None and state.pre_stages is None
    extras = ResumeState.from_dict(WITH_EXTRAS)
    assert extras.extra == {"method_extra": {"a": 1}, "partial": None}
    assert extras.partial is None and extras.pre_stages == ["stage1"]


def test_a_changed_state_keeps_the_files_order_and_new_keys_go_last():
    state = ResumeState.from_dict(dict(DONE_FROM_NOTHING))
    state.history = [{"epoch": 1}]
    state.epoch = 1
    assert list(state.to_dict()) == ["stage", "history", "epoch"]
    fresh = ResumeState(stage="main", epoch=2, checkpoint="p", history=[], best_val_ra=1.0,
                        callbacks={}, extra={"x": 1})
    fresh.partial = {"epoch": 3, "step": 1, "metrics": []}
    assert list(fresh.to_dict()) == ["x", "stage", "epoch", "checkpoint", "history",
                                     "best_val_ra", "callbacks", "partial"]


def test_numpy_scalars_are_written_as_floats():
    state = ResumeState(stage="main", epoch=1, best_val_ra=np.float32(0.5))
    assert json.loads(state.to_json())["best_val_ra"] == 0.5


@pytest.mark.parametrize("text", ['[1, 2]', '{"epoch": 1}'])
def test_a_file_that_is_no_state_is_refused_by_name(text):
    with pytest.raises(ValueError, match="not a resume state"):
        ResumeState.from_json(text)
