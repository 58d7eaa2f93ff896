"""Training augmentation as whole-batch image transforms.

The reference (torchvision) augments one image at a time. On a 2-core CPU a per-image tf.data map
costs more than the transform itself, so each augmentation here is one `ImageProjectiveTransformV3`
call on the whole batch, with a per-image random matrix. Pad-then-crop and the horizontal flip are
integer shifts and a mirror sampled with nearest-neighbour interpolation, so they are exact (zero
fill = torchvision's zero padding). The rotation (CIFAR-100) is a second transform, applied after
crop and flip as in the reference, so that its corners are filled with zeros exactly as
torchvision's `RandomRotation` (default NEAREST interpolation, fill 0) fills them.

Randomness is stateless and driven by an explicit seed pair per batch, so a parallel map stays
deterministic for a given pipeline seed.
"""
import math

import tensorflow as tf


def _transform(images, matrices, interpolation):
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=matrices, output_shape=tf.stack([height, width]),
        fill_value=tf.constant(0.0, images.dtype), interpolation=interpolation,
        fill_mode="CONSTANT")


def crop_flip_matrices(batch, width, pad, flip, seed):
    """[batch, 8] output->input maps of `pad`-zero-pad + random crop (+ random horizontal flip).

    A crop at offset o in [0, 2*pad] of the padded image is a shift by o - pad of the original,
    which is how torchvision's `RandomCrop(size, padding=pad)` draws it.
    """
    seeds = tf.random.experimental.stateless_split(seed, 2)
    shift = tf.random.stateless_uniform([batch, 2], seeds[0], minval=-pad, maxval=pad + 1,
                                        dtype=tf.int32)
    dx, dy = tf.cast(shift[:, 0], tf.float32), tf.cast(shift[:, 1], tf.float32)
    ones, zeros = tf.ones([batch]), tf.zeros([batch])
    if flip:
        mirrored = tf.random.stateless_uniform([batch], seeds[1]) < 0.5
        # Flip after the crop: out(x, y) = crop(W-1-x, y) = image(W-1-x+dx, y+dy).
        a0 = tf.where(mirrored, -ones, ones)
        a2 = tf.where(mirrored, float(width - 1) + dx, dx)
    else:
        a0, a2 = ones, dx
    return tf.stack([a0, zeros, a2, zeros, ones, dy, zeros, zeros], axis=1)


def rotation_matrices(batch, height, width, max_degrees, seed):
    """[batch, 8] output->input maps of a rotation about the centre by U(-max, max) degrees."""
    angle = tf.random.stateless_uniform([batch], seed, -max_degrees, max_degrees) * (math.pi / 180)
    cos, sin = tf.cos(angle), tf.sin(angle)
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    zeros = tf.zeros([batch])
    return tf.stack([cos, -sin, cx - cos * cx + sin * cy,
                     sin, cos, cy - sin * cx - cos * cy, zeros, zeros], axis=1)


def augment_batch(images, seed, pad, flip=False, rotate_degrees=0.0,
                  rotate_interpolation="NEAREST"):
    """Augment a float32 NHWC batch with static H, W; `seed` is an int32/int64 pair."""
    height, width = int(images.shape[1]), int(images.shape[2])
    batch = tf.shape(images)[0]
    crop_seed, rotate_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    if pad or flip:
        matrices = crop_flip_matrices(batch, width, pad, flip, crop_seed)
        images = _transform(images, matrices, "NEAREST")
    if rotate_degrees:
        matrices = rotation_matrices(batch, height, width, float(rotate_degrees), rotate_seed)
        images = _transform(images, matrices, rotate_interpolation)
    return images
