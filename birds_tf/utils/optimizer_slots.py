"""Optimizer slot access below the training layer (pruning and regrowth reset momentum)."""


def momentum_buffer(optimizer, variable):
    """The momentum slot of ``variable`` (pruning resets it at pruned positions)."""
    if not getattr(optimizer, "built", False):
        raise ValueError("The optimizer has no state yet; call optimizer.build(model."
                         "trainable_variables) or train one step first.")
    if hasattr(optimizer, "momentums"):
        try:
            index = optimizer._get_variable_index(variable)
        except KeyError:
            raise ValueError(f"Variable {variable.path!r} is not optimized by this "
                             "optimizer.") from None
        return optimizer.momentums[index]
    raise ValueError(f"Optimizer {type(optimizer).__name__} has no momentum buffers.")
