"""Defaults and labels that must say what the paper (or the reference code) says."""
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_default_cw_is_the_papers_cw_l2():
    """Appendix A3.2: 1 search step on c, initial constant 0.1, 100 iterations, lr 0.01."""
    from birds_tf.attacks import cw_l2
    from birds_tf.attacks.registry import ATTACKS, resolve_kwargs
    from birds_tf.evaluation.robustness import DEFAULT_ATTACKS
    from launch import evaluate as evaluate_cli
    assert "cw_l2" in DEFAULT_ATTACKS and "cw_inf" not in DEFAULT_ATTACKS
    assert evaluate_cli.FLAGS["attacks"].default.split(",") == list(DEFAULT_ATTACKS)
    fn, defaults = ATTACKS["cw_l2"]
    assert fn is cw_l2
    kwargs = resolve_kwargs("cw_l2", defaults, 8 / 255, {})
    assert kwargs["c"] == 0.1 and kwargs["binary_search_steps"] == 1
    assert kwargs["steps"] == 100 and kwargs["learning_rate"] == 0.01
    assert "cw_inf" in ATTACKS  # still available by name


def test_no_doc_calls_cw_inf_the_papers_setting():
    pattern = re.compile(r"paper'?s?\W+(?:setting\W+)?CW-inf|CW-inf[^.\n]*(?:as the paper|assumed "
                         r"(?:to be|for) the paper)", re.I)
    paths = ["README.md", "launch/evaluate.py", "birds_tf/attacks/registry.py",
             "birds_tf/attacks/pgd_restarts.py", "birds_tf/evaluation/robustness.py"]
    for path in paths:
        with open(os.path.join(ROOT, path)) as f:
            text = f.read()
        assert not pattern.search(text), path
