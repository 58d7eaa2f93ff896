"""The tf.data plumbing shared by every dataset.

Shuffling and capping happen on the raw (cheapest) element, decoding per element in a parallel map,
and scaling plus augmentation once per batch. Nothing is repeated: one pass over `train` is one
epoch, which is what Keras `fit` and the custom loops expect. Shuffle order and augmentation are
seeded and re-drawn on every new iteration, so epochs differ but runs repeat (for a fixed global
TF seed, which tf.data combines with the op seeds).
"""
import tensorflow as tf

from birds_tf.data import augment as augment_lib

AUTOTUNE = tf.data.AUTOTUNE


def _without_autotune(ds):
    """``ds`` with tf.data's autotuning off (``AUTOTUNE`` then means tf.data's fixed defaults).

    Why: Keras ``fit`` stops its iterator after ``steps_per_epoch`` instead of running it to the
    end, and destroying an unfinished iterator waits for the autotune thread's current sleep:
    measured 20-23 s of idle wall time at every ``fit`` exit of a PreActResNet-18 run on one core
    (no thread on the CPU meanwhile), paid again by every segment of a run rebuilt between
    epochs. The batches are the same (order and augmentation are seeded, not tuned), and an
    input pipeline of a few ops per batch is far from the PGD step's cost
    (``benchmarks.pgd_at``'s ``input_pipeline_vs_fastest_step``).
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.with_options(options)


def _to_float(images):
    if images.dtype == tf.uint8:
        return tf.cast(images, tf.float32) / 255.0
    return tf.cast(images, tf.float32)


def _finish(images, labels):
    return images, tf.cast(labels, tf.int32)


def eval_pipeline(ds, source, batch_size, limit):
    """Capped, decoded, batched, [0, 1] float32; fixed order, no augmentation."""
    if limit is not None:
        ds = ds.take(limit)
    if source.decode is not None:
        ds = ds.map(source.decode, num_parallel_calls=AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=False)
    ds = ds.map(lambda x, y: _finish(_to_float(x), y), num_parallel_calls=AUTOTUNE)
    return _without_autotune(ds.prefetch(AUTOTUNE))


def _augmenter(source):
    """Map function for ((images, labels), seed pair) batches: the dataset's augmentation."""
    def augment_fn(batch, batch_seed):
        images, labels = batch
        images = augment_lib.augment_batch(
            _to_float(images), batch_seed, pad=source.pad, flip=source.flip,
            rotate_degrees=source.rotate_degrees)
        return _finish(images, labels)
    return augment_fn


def train_pipeline(ds, source, batch_size, limit, num_examples, seed, augment):
    """Capped, reshuffled every epoch, decoded, batched, scaled, and augmented when asked."""
    if limit is not None:
        ds = ds.take(limit)
    ds = ds.shuffle(max(1, num_examples), seed=seed, reshuffle_each_iteration=True)
    if source.decode is not None:
        ds = ds.map(source.decode, num_parallel_calls=AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=False)
    if augment:
        # One fresh int64 per batch and per iteration; it seeds the stateless augmentation ops.
        noise = tf.data.Dataset.random(seed=seed + 1, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((ds, noise)).map(_augmenter(source),
                                                  num_parallel_calls=AUTOTUNE)
    else:
        ds = ds.map(lambda x, y: _finish(_to_float(x), y), num_parallel_calls=AUTOTUNE)
    return _without_autotune(ds.prefetch(AUTOTUNE))


def train_epochs_pipeline(ds, source, batch_size, limit, num_examples, seed, augment, first_epoch,
                          last_epoch):
    """Epochs ``first_epoch..last_epoch-1`` back to back, each shuffled and augmented from
    ``(seed, epoch)`` alone.

    A run resumed at epoch e therefore sees exactly the batches an uninterrupted run saw there
    (``train`` reshuffles from an iteration counter that a new process starts again at zero).
    """
    if limit is not None:
        ds = ds.take(limit)
    steps = -(-num_examples // batch_size)
    seed = int(seed)

    def one_epoch(epoch):
        shuffle_seed = tf.cast(seed, tf.int64) * 1_000_003 + epoch
        out = ds.shuffle(max(1, num_examples), seed=shuffle_seed, reshuffle_each_iteration=False)
        if source.decode is not None:
            out = out.map(source.decode, num_parallel_calls=AUTOTUNE)
        out = out.batch(batch_size, drop_remainder=False)
        if not augment:
            return out.map(lambda x, y: _finish(_to_float(x), y), num_parallel_calls=AUTOTUNE)
        batch_seeds = tf.data.Dataset.range(steps).map(
            lambda b: tf.stack([shuffle_seed + 7, b]))
        return tf.data.Dataset.zip((out, batch_seeds)).map(_augmenter(source),
                                                            num_parallel_calls=AUTOTUNE)

    epochs = tf.data.Dataset.range(int(first_epoch), int(last_epoch))
    return _without_autotune(epochs.flat_map(one_epoch).prefetch(AUTOTUNE))
