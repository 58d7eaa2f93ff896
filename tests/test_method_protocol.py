"""The plug-in protocol: one declaration per method (``metrics.methods``) from which the
registry, the gin registrations, the plug-ins' names and the tables' display names all come; the
channel index arithmetic (``sparsity.channel.current_positions``) on hand-made cases; the
resume record's update for a rebuilt model."""
import gin
import pytest

from birds_tf.metrics import methods, table
from birds_tf.sparsity import channel
from birds_tf.utils.resume_state import ResumeState

# The paper's names as Table 1 prints them (typed from the paper), and the methods beyond it.
PAPER = {"dense": "Baseline", "small_dense": "Small Dense", "random": "Random Pruning",
         "omp": "OMP", "snip": "SNIP", "grasp": "GraSP", "synflow": "SynFlow", "igq": "IGQ",
         "rb": "Robust Bird", "fb": "Flying Bird", "fb_plus": "Flying Bird+"}
UNNAMED = {"erk", "prune_at_init", "gmp", "iwi"}


def test_every_declared_method_resolves_to_its_class_gin_name_and_identity():
    from birds_tf.experiment import configurables  # noqa: F401 (the gin registrations)
    from birds_tf.experiment import method as method_lib
    assert method_lib.names() == sorted(set(PAPER) | UNNAMED | {"fb_plus_channel"})
    for spec in methods.specs():
        cls = method_lib.get(spec.name)
        assert cls.__name__ == spec.class_name and cls.__module__ == spec.module
        assert cls.name == spec.name
        assert cls.display_name == (spec.display_name or spec.name)
        if spec.name != "dense":  # Dense has no settings to bind
            # the gin name is the class name (what the gin files bind, e.g. FlyingBird.*)
            assert gin.config._REGISTRY.get_match(spec.class_name) is not None, spec.name
    # a base class no method declares keeps the base identity
    from birds_tf.experiment.static_pruning import StaticMask
    assert StaticMask.name == "base"


def test_tables_print_the_declared_names_in_the_papers_order():
    for name, display in PAPER.items():
        assert table.METHOD_NAMES[name] == display
    assert table.METHOD_NAMES["rp"] == "Random Pruning"  # older results' name for random
    assert not UNNAMED & set(table.METHOD_NAMES)  # printed by their own names
    order = table.METHOD_ORDER
    assert order.index("dense") < order.index("rp") < order.index("random") < \
        order.index("rb") < order.index("fb") < order.index("fb_plus") < \
        order.index("fb_plus_channel")
    rows = table.table_rows([{"method": m, "dataset": "d", "arch": "a", "target_sparsity": 0.8}
                             for m in ("iwi", "fb_plus", "gmp", "rb")])
    assert [r["method"] for r in rows] == ["rb", "fb_plus", "gmp", "iwi"]


def test_a_method_declared_later_shows_up_everywhere(monkeypatch):
    from birds_tf.experiment import method as method_lib
    monkeypatch.setattr(methods, "_BY_NAME", dict(methods._BY_NAME))
    saved_names, saved_order = dict(methods.DISPLAY_NAMES), list(methods.ORDER)
    try:
        method_lib.register("mine", "birds_tf.experiment.method:Dense", "Mine")
        assert "mine" in method_lib.names()
        assert table.METHOD_NAMES["mine"] == "Mine" and table.METHOD_ORDER[-1] == "mine"
    finally:
        methods.DISPLAY_NAMES.clear()
        methods.DISPLAY_NAMES.update(saved_names)
        methods.ORDER[:] = saved_order
    assert "mine" not in table.METHOD_NAMES


def test_bad_declarations_and_unknown_methods_are_refused():
    with pytest.raises(ValueError, match="'module:Class', got 'nocolon'"):
        methods.declare(methods.MethodSpec("x", "nocolon"))
    with pytest.raises(TypeError, match="MethodSpec"):
        methods.declare(("x", "a:B"))
    with pytest.raises(ValueError, match="Unknown method 'nope'; allowed: .*'fb_plus'"):
        methods.spec("nope")


def test_kept_channels_and_current_positions_by_hand():
    # 6 original channels, 1 and 4 physically gone: the narrow layer's positions 0..3 are
    # original channels 0, 2, 3, 5.
    assert channel.kept_channels(6, [1, 4]) == [0, 2, 3, 5]
    assert channel.kept_channels(3) == [0, 1, 2]
    removed = {"a": [1, 3, 4, 5], "b": [0], "c": [2]}
    physical = {"a": [1, 4], "c": [2]}
    # a: 3 -> position 2, 5 -> position 3; b: nothing gone, 0 -> 0; c: all pending are gone.
    assert channel.current_positions(removed, physical, {"a": 6, "b": 2, "c": 4}) == \
        {"a": [2, 3], "b": [0]}
    assert list(channel.current_positions(removed, physical, {"a": 6, "b": 2, "c": 4})) == \
        ["a", "b"]  # the record's order (the shrink entries are written in it)
    assert channel.current_positions({}, {}, {}) == {}


def test_a_rebuilt_models_record_keeps_the_files_key_order():
    text = ('{"stage": "main", "epoch": 1, "checkpoint": "ckpt-1", "callbacks": '
            '{"ChannelDynamicSparsity": {"removed": {"a": [1]}, "physical": {}, "shrinks": [], '
            '"step": 4}}}')
    state = ResumeState.from_json(text)
    state.update_callback_state("ChannelDynamicSparsity",
                                {"physical": {"a": [1]}, "shrinks": [{"epoch": 1}]})
    saved = state.to_dict()["callbacks"]["ChannelDynamicSparsity"]
    assert list(saved) == ["removed", "physical", "shrinks", "step"]
    assert saved["physical"] == {"a": [1]} and saved["shrinks"] == [{"epoch": 1}]
    fresh = ResumeState(stage="main")
    fresh.update_callback_state("X", {"k": 1})
    assert fresh.callback_state("X") == {"k": 1}
