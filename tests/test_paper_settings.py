"""Defaults and labels that must say what the paper (or the reference code) says."""
import os
import re


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


def _paper():
    with open(os.path.join(ROOT, "..", "shared", "seeds", "000_2224bf7c7b280bf3.txt")) as f:
        return " ".join(f.read().split())


def _gin_bindings(name):
    import gin

    from launch import common
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        gin.clear_config()
        common.parse_gin([os.path.join(ROOT, "gin", name)], [])
        return {**{f"OMP.{k}": v for k, v in gin.get_bindings("OMP").items()},
                **{f"train_eval.{k}": v for k, v in gin.get_bindings("train_eval").items()}}
    finally:
        gin.clear_config()
        os.chdir(cwd)


def test_milestone_labels():
    """RB stage 1's 50/150 is in Appendix A2.2; OMP's 100/150 is the paper's general recipe and
    the reference's 50/150 has its own config."""
    with open(os.path.join(ROOT, "gin", "rb_resnet18.gin")) as f:
        rb = f.read()
    assert "not in the paper" not in rb.lower() and "A2.2" in rb
    if os.path.exists(os.path.join(ROOT, "..", "shared", "seeds")):
        paper = _paper()
        assert "decays by ten times at 50, 150 epoch" in paper
        assert "decays by 10 times at 100,150 epoch" in paper
    omp = _gin_bindings("omp_resnet18.gin")
    assert tuple(omp["OMP.pretrain_milestones"]) == (100, 150)
    assert tuple(omp["train_eval.milestones"]) == (100, 150)
    code = _gin_bindings("omp_resnet18_official_code.gin")
    assert tuple(code["OMP.pretrain_milestones"]) == (50, 150)
    assert tuple(code["train_eval.milestones"]) == (50, 150)
