"""Adversarial attacks on models that map [0, 1] images to logits."""
from birds_tf.attacks.apgd import apgd, apgd_single_run, apgd_targeted
from birds_tf.attacks.autoattack import STANDARD, AutoAttackResult, autoattack
from birds_tf.attacks.cw import cw_l2
from birds_tf.attacks.fab import fab_t
from birds_tf.attacks.pgd import attack_loss, pgd_linf
from birds_tf.attacks.pgd_restarts import cw_inf, pgd_restarts
from birds_tf.attacks.registry import ATTACKS, run_attack
from birds_tf.attacks.sanity import sanity_checks
from birds_tf.attacks.square import square
from birds_tf.attacks.transfer import transfer_attack

__all__ = ["pgd_linf", "attack_loss", "pgd_restarts", "cw_inf", "cw_l2", "apgd", "apgd_targeted",
           "apgd_single_run", "fab_t", "square", "autoattack", "AutoAttackResult", "STANDARD",
           "transfer_attack", "ATTACKS", "run_attack", "sanity_checks"]
