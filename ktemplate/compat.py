"""Work-arounds for known bugs of the pinned libraries, each applied only where it is needed.

Each names its upstream issue; remove it once the pinned version fixes the bug (its test then
shows whether the work-around is still needed).
"""

from __future__ import annotations

import tensorflow as tf


def keras_multi_worker_fit() -> None:
    """Lets Keras 3's `Model.fit` run under `MultiWorkerMirroredStrategy`.

    Before the first step, Keras' TensorFlow trainer builds the model from one batch, which it
    gets by `strategy.reduce("MEAN", batch)` of the distributed batch; under
    MultiWorkerMirroredStrategy that reduce, run eagerly, fails with "Attempt to convert a
    value (PerReplica:...) with an unsupported type" (keras-team/keras#20585). Building needs
    only the batch's shapes and dtypes, so this takes this worker's first local replica's
    batch instead. Idempotent.
    """
    from keras.src.backend.tensorflow import trainer

    cls = trainer.TensorFlowTrainer
    if getattr(cls, "_ktemplate_multi_worker_patch", False):
        return
    original = cls._maybe_symbolic_build

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if iterator is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            return original(self, iterator=iterator, data_batch=data_batch)
        for _, _, it in iterator:
            batch = next(it)
            data_batch = tf.nest.map_structure(
                lambda x: (
                    strategy.experimental_local_results(x)[0]
                    if isinstance(x, tf.distribute.DistributedValues)
                    else x
                ),
                batch,
            )
            break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    cls._maybe_symbolic_build = _maybe_symbolic_build
    cls._ktemplate_multi_worker_patch = True

    # Each step's logs (loss, metric results: scalars) are averaged over the workers with
    # `strategy.reduce("MEAN", v, axis=0)`, which fails on a scalar ("Invalid reduction
    # dimension 0 for input with 0 dimensions"); a scalar is averaged with axis=None.
    original_reduce = trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if reduction not in ("mean", "auto") or not trainer._collective_all_reduce_multi_worker(
            strategy
        ):
            return original_reduce(values, strategy, reduction)

        def _reduce(v):
            local = (
                strategy.experimental_local_results(v)[0]
                if trainer._is_per_replica_instance(v)
                else v
            )
            axis = 0 if getattr(local, "shape", None) is not None and local.shape.rank else None
            return strategy.reduce("MEAN", v, axis=axis)

        return tf.nest.map_structure(_reduce, values)

    trainer.reduce_per_replica = reduce_per_replica
