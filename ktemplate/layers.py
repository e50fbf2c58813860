"""Keras layers shared by the templates: the text template's Transformer encoder pieces and
the forecaster's window transforms and forecast bases.

Each is registered under the package name of the template where it was first defined, so
checkpoints written before it moved here still load.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from ktemplate import forecasting


@keras.saving.register_keras_serializable(package="text_transformer")
class TokenAndPositionEmbedding(keras.layers.Layer):
    """Sum of a learned token embedding and a learned position embedding."""

    def __init__(self, vocab_size: int, sequence_length: int, embed_dim: int, **kwargs):
        super().__init__(**kwargs)
        for name, value in (
            ("vocab_size", vocab_size),
            ("sequence_length", sequence_length),
            ("embed_dim", embed_dim),
        ):
            if value <= 0:
                raise ValueError(f"TokenAndPositionEmbedding: {name} must be > 0, got {value}.")
        self.vocab_size = vocab_size
        self.sequence_length = sequence_length
        self.embed_dim = embed_dim
        self.token_embedding = keras.layers.Embedding(vocab_size, embed_dim, name="token")
        self.position_embedding = keras.layers.Embedding(sequence_length, embed_dim, name="pos")

    def build(self, input_shape):
        self.token_embedding.build(input_shape)
        self.position_embedding.build((self.sequence_length,))

    def call(self, token_ids):
        positions = keras.ops.arange(keras.ops.shape(token_ids)[-1])
        return self.token_embedding(token_ids) + self.position_embedding(positions)

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.embed_dim)

    def get_config(self):
        return {
            **super().get_config(),
            "vocab_size": self.vocab_size,
            "sequence_length": self.sequence_length,
            "embed_dim": self.embed_dim,
        }


@keras.saving.register_keras_serializable(package="text_transformer")
class TransformerEncoderBlock(keras.layers.Layer):
    """Self-attention then a feed-forward network, each with dropout, a residual and LayerNorm.

    Padding positions (`padding_mask` False) are never attended to.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        ff_dim: int,
        dropout: float = 0.1,
        activation: str = "relu",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if embed_dim <= 0 or num_heads <= 0 or ff_dim <= 0:
            raise ValueError(
                "TransformerEncoderBlock: embed_dim, num_heads and ff_dim must be > 0, got "
                f"{embed_dim}, {num_heads}, {ff_dim}."
            )
        if embed_dim % num_heads:
            raise ValueError(
                f"TransformerEncoderBlock: embed_dim ({embed_dim}) must be a multiple of "
                f"num_heads ({num_heads})."
            )
        if not 0 <= dropout < 1:
            raise ValueError(f"TransformerEncoderBlock: dropout must be in [0, 1), got {dropout}.")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.ff_dim = ff_dim
        self.dropout = dropout
        self.activation = activation
        self.attention = keras.layers.MultiHeadAttention(
            num_heads, key_dim=embed_dim // num_heads, dropout=dropout, name="attention"
        )
        self.ff_hidden = keras.layers.Dense(ff_dim, activation=activation, name="ff_hidden")
        self.ff_output = keras.layers.Dense(embed_dim, name="ff_output")
        self.attention_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="attention_norm")
        self.ff_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="ff_norm")
        self.attention_dropout = keras.layers.Dropout(dropout)
        self.ff_dropout = keras.layers.Dropout(dropout)

    def build(self, input_shape):
        self.attention.build(input_shape, input_shape)
        self.ff_hidden.build(input_shape)
        self.ff_output.build((*input_shape[:-1], self.ff_dim))
        self.attention_norm.build(input_shape)
        self.ff_norm.build(input_shape)

    def call(self, inputs, padding_mask=None, training=False):
        attention_mask = None
        if padding_mask is not None:
            attention_mask = keras.ops.expand_dims(padding_mask, 1)  # [B, 1 query, T keys]
        attended = self.attention(inputs, inputs, attention_mask=attention_mask, training=training)
        x = self.attention_norm(inputs + self.attention_dropout(attended, training=training))
        hidden = self.ff_output(self.ff_hidden(x))
        return self.ff_norm(x + self.ff_dropout(hidden, training=training))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "embed_dim": self.embed_dim,
            "num_heads": self.num_heads,
            "ff_dim": self.ff_dim,
            "dropout": self.dropout,
            "activation": self.activation,
        }


@keras.saving.register_keras_serializable(package="text_transformer")
class MaskedPooling(keras.layers.Layer):
    """Mean, max or sum over the non-padding tokens; a text with no tokens pools to zeros."""

    def __init__(self, mode: str = "mean", **kwargs):
        super().__init__(**kwargs)
        if mode not in ("mean", "max", "sum"):
            raise ValueError(f"MaskedPooling: mode must be 'mean', 'max' or 'sum', got {mode!r}.")
        self.mode = mode

    def call(self, inputs, padding_mask):
        mask = keras.ops.cast(keras.ops.expand_dims(padding_mask, -1), inputs.dtype)
        count = keras.ops.sum(mask, axis=1)
        if self.mode == "sum":
            return keras.ops.sum(inputs * mask, axis=1)
        if self.mode == "mean":
            return keras.ops.sum(inputs * mask, axis=1) / keras.ops.maximum(count, 1.0)
        pooled = keras.ops.max(keras.ops.where(mask > 0, inputs, -1e4), axis=1)
        return keras.ops.where(count > 0, pooled, keras.ops.zeros_like(pooled))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="text_transformer")
class WideLinear(keras.layers.Layer):
    """A linear model over (feature id, weight) pairs, `text.WideFeatures`' output: for each
    text, scale * (sum of weight * kernel[id] + bias), [batch, units]. The kernel starts at
    zero (the model starts as the encoder alone); `scale` multiplies the step Adam takes on
    these weights (a linear model over sparse TF-IDF needs a larger one than the encoder). Id
    0 with weight 0 pads.

    `naive_bayes` ("beside" or "only") adds (or uses alone) a second linear model over the
    features scaled by fixed naive-Bayes log-count ratios per class (NBSVM, Wang and Manning
    2012): `ratios` [features, units] at first build, then a non-trainable weight that saves
    and loads with the model."""

    def __init__(self, features: int, units: int, scale: float = 10.0,
                 naive_bayes: str = "none", ratios=None, **kwargs):  # fmt: skip
        super().__init__(**kwargs)
        self.features, self.units, self.scale = int(features), int(units), float(scale)
        if naive_bayes not in ("none", "beside", "only"):
            raise ValueError(f"naive_bayes is {naive_bayes!r}: use none, beside or only.")
        self.naive_bayes, self._ratios = naive_bayes, ratios

    def build(self, input_shape):
        shape = (self.features, self.units)
        if self.naive_bayes != "only":
            self.kernel = self.add_weight(shape, "zeros", name="kernel")
        if self.naive_bayes != "none":
            self.ratios = self.add_weight(shape, "zeros", name="ratios", trainable=False)
            if self._ratios is not None:  # the first build's values; loading restores them
                self.ratios.assign(np.asarray(self._ratios, "float32"))
                self._ratios = None  # the weight holds them now: no second copy kept
            self.nb_kernel = self.add_weight(shape, "zeros", name="nb_kernel")
        self.bias = self.add_weight((self.units,), "zeros", name="bias")

    def call(self, inputs):
        ids, values = inputs
        values = keras.ops.expand_dims(values, -1)
        summed = self.bias
        if self.naive_bayes != "only":
            rows = keras.ops.take(self.kernel, ids, axis=0)  # [batch, length, units]
            summed = summed + keras.ops.sum(values * rows, axis=1)
        if self.naive_bayes != "none":
            rows = keras.ops.take(self.nb_kernel, ids, axis=0)
            scaled = values * keras.ops.take(self.ratios, ids, axis=0)
            summed = summed + keras.ops.sum(scaled * rows, axis=1)
        return self.scale * summed

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], self.units)

    def get_config(self):
        return {**super().get_config(), "features": self.features, "units": self.units,
                "scale": self.scale, "naive_bayes": self.naive_bayes}  # fmt: skip


# keras.applications backbones that take raw 0..255 RGB pixels (preprocessing built in).
APPLICATIONS = {
    "mobilenet_v3_small": "MobileNetV3Small",
    "mobilenet_v3_large": "MobileNetV3Large",
    "efficientnet_b0": "EfficientNetB0",
    "efficientnet_v2_b0": "EfficientNetV2B0",
}


def applications_backbone(x, name: str, size: int, weights: str | None):
    """Raw pixels [B, H, W, C] → a keras.applications network's pooled features: resized to
    `size` x `size`, grey repeated to RGB; `weights` None, "imagenet" (downloads) or a
    .weights.h5 path. The network is frozen (`training.fine_tune_backbone` unfreezes it) and
    named "backbone"; its BatchNorm stays in inference mode, also while fine-tuning."""
    x = keras.layers.Resizing(size, size)(x)
    if x.shape[-1] == 1:
        x = keras.layers.Concatenate()([x, x, x])
    base = getattr(keras.applications, APPLICATIONS[name])(
        input_shape=(size, size, 3), include_top=False, weights=weights, pooling="avg"
    )
    base.name = "backbone"
    base.trainable = False
    return base(x, training=False)


@keras.saving.register_keras_serializable(package="timeseries_lstm")
class RelativeToLastStep(keras.layers.Layer):
    """Subtracts each window's last step from every step: [B, T, F] → [B, T, F]."""

    def call(self, inputs, training=False):
        return inputs - inputs[:, -1:, :]


@keras.saving.register_keras_serializable(package="timeseries_lstm")
class AddLastValue(keras.layers.Layer):
    """Adds the last step of one input feature to a forecast of changes.

    Args:
        feature_index: the feature (last axis of the window) whose last value is the base.
    """

    def __init__(self, feature_index: int, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(feature_index, int) or feature_index < 0:
            raise ValueError(
                f"AddLastValue expects feature_index >= 0 (an int), got {feature_index!r}."
            )
        self.feature_index = feature_index

    def call(self, inputs, training=False):
        changes, window = inputs
        last = window[:, -1, self.feature_index : self.feature_index + 1]
        return keras.ops.cast(changes, self.compute_dtype) + keras.ops.cast(
            last, self.compute_dtype
        )

    def get_config(self):
        return {**super().get_config(), "feature_index": self.feature_index}


@keras.saving.register_keras_serializable(package="timeseries_lstm")
class AddSeasonalBase(keras.layers.Layer):
    """Adds the seasonal-naive forecast (the target one season before each step ahead, taken
    from the window) to a forecast of differences from it.

    Args:
        feature_index: the target feature (last axis of the window).
        season: steps per season; the window must hold at least one season.
    """

    def __init__(self, feature_index: int, season: int, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(feature_index, int) or feature_index < 0:
            raise ValueError(f"AddSeasonalBase expects feature_index >= 0, got {feature_index!r}.")
        if not isinstance(season, int) or season < 2:
            raise ValueError(f"AddSeasonalBase expects season >= 2, got {season!r}.")
        self.feature_index, self.season = feature_index, season

    def call(self, inputs, training=False):
        changes, window = inputs
        last_season = window[:, -self.season :, self.feature_index]
        index = [h % self.season for h in range(changes.shape[-1])]
        base = keras.ops.take(last_season, index, axis=1)
        return keras.ops.cast(changes, self.compute_dtype) + keras.ops.cast(
            base, self.compute_dtype
        )

    def get_config(self):
        return {**super().get_config(), "feature_index": self.feature_index, "season": self.season}


@keras.saving.register_keras_serializable(package="timeseries_lstm")
class SeasonalLags(keras.layers.Layer):
    """The seasonal-naive forecast at each of several seasons, taken from the window: for each
    season s and each step ahead h (1..horizon), the target at the window's step
    `window - s + (h - 1) % s`. Output [batch, len(seasons) * horizon], season by season, for
    a head that weighs two seasonalities (a day and a week of hourly data) when the recurrent
    layers read only the window's recent steps.

    Args:
        feature_index: the target feature (last axis of the window).
        seasons: steps per season, each from 2 to the window's length.
        horizon: steps ahead.
    """

    def __init__(self, feature_index: int, seasons: list[int], horizon: int, **kwargs):
        super().__init__(**kwargs)
        seasons = [int(s) for s in seasons]
        if not seasons or min(seasons) < 2:
            raise ValueError(f"SeasonalLags expects seasons of at least 2 steps, got {seasons}.")
        if horizon < 1:
            raise ValueError(f"SeasonalLags expects horizon >= 1, got {horizon}.")
        self.feature_index, self.seasons, self.horizon = feature_index, seasons, horizon

    def call(self, window):
        longest = max(self.seasons)
        steps = window.shape[1]
        if steps is not None and longest > steps:
            raise ValueError(
                f"SeasonalLags: a season of {longest} steps needs a window holding one, got "
                f"{steps} steps."
            )
        last = window[:, -longest:, self.feature_index]  # the longest season's steps
        index = [longest - s + h % s for s in self.seasons for h in range(self.horizon)]
        return keras.ops.take(last, index, axis=1)

    def get_config(self):
        return {
            **super().get_config(),
            "feature_index": self.feature_index,
            "seasons": self.seasons,
            "horizon": self.horizon,
        }


@keras.saving.register_keras_serializable(package="timeseries_lstm")
class AddHoltWintersBase(keras.layers.Layer):
    """Adds the additive Holt-Winters forecast of the window's target to a forecast of changes
    from it: a fixed linear map of the window (`forecasting.holt_winters_weights`, with the
    coefficients fitted on the train part), so the export needs nothing but the weights.

    Args:
        feature_index: the target feature (last axis of the window).
        window, horizon: the input and forecast lengths.
        season: steps per season (1: no season); alpha, beta, gamma: smoothing coefficients
            (gamma None without a season).
    """

    def __init__(self, feature_index, window, horizon, season, alpha, beta, gamma, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"AddHoltWintersBase expects alpha in [0, 1], got {alpha!r}.")
        self.feature_index, self.window, self.horizon = feature_index, window, horizon
        self.season, self.alpha, self.beta, self.gamma = season, alpha, beta, gamma
        weights = forecasting.holt_winters_weights(window, horizon, season, alpha, beta, gamma)
        self.weights_matrix = keras.ops.convert_to_tensor(weights.astype("float32"))

    def call(self, inputs, training=False):
        changes, window = inputs
        base = keras.ops.matmul(
            keras.ops.cast(window[:, :, self.feature_index], "float32"), self.weights_matrix
        )
        return keras.ops.cast(changes, self.compute_dtype) + keras.ops.cast(
            base, self.compute_dtype
        )

    def get_config(self):
        names = ("feature_index", "window", "horizon", "season", "alpha", "beta", "gamma")
        return {**super().get_config(), **{n: getattr(self, n) for n in names}}


@keras.saving.register_keras_serializable(package="timeseries_lstm")
class AddLinearBase(keras.layers.Layer):
    """Adds a fixed linear forecast of the window's target, `window[:, :, i] @ W`, to a
    forecast of changes from it (`forecasting.linear_base_weights`: a ridge regression fitted
    on the train windows; `forecasting.theta_base_weights`: the Theta method). W is a
    non-trainable weight, so it is saved with the model.

    With a seasonal `profile` (the train part's, `forecasting.season_profile`), W runs on the
    window less the profile and the profile over the horizon is added back, at the phase that
    correlates best with the window (`forecasting.profile_phases`, `profile_offsets`).

    Args:
        feature_index: the target feature (last axis of the window).
        window, horizon: the input and forecast lengths (W is [window, horizon]).
        weights: W's values (a nested list); None when a saved model restores them.
        profile: None, or the seasonal profile (one value per slot of the season) in the
            window's units.
    """

    def __init__(self, feature_index, window, horizon, weights=None, profile=None, **kwargs):
        super().__init__(**kwargs)
        self.feature_index, self.window, self.horizon = feature_index, window, horizon
        initial = "zeros" if weights is None else keras.initializers.Constant(weights)
        self.base_weights = self.add_weight(
            shape=(window, horizon), initializer=initial, trainable=False, name="base_weights"
        )
        self.profile = None if profile is None else [float(v) for v in profile]
        if self.profile is not None:
            values = np.asarray(self.profile, "float64")
            inside, ahead = forecasting.profile_at_phases(values, window, horizon)
            phases = forecasting.profile_phases(values, window)
            constants = {"phases": phases, "inside": inside, "ahead": ahead}
            self.constants = {
                k: keras.ops.convert_to_tensor(v.astype("float32")) for k, v in constants.items()
            }

    def call(self, inputs, training=False):
        changes, window = inputs
        values = keras.ops.cast(window[:, :, self.feature_index], "float32")
        weights = keras.ops.cast(self.base_weights, "float32")
        # Products and sums, not matmuls: LiteRT's dynamic-range quantization would run these
        # in int8 (the base's error, and with a profile wrong phases from the argmax; tf.argmax:
        # keras.ops.argmax's handling of -0.0 does not convert to LiteRT).
        ops = keras.ops
        base = ops.sum(values[:, :, None] * weights[None], axis=1)
        if self.profile is not None:
            c = self.constants
            offsets = c["ahead"] - ops.matmul(c["inside"], weights)  # constants: folded
            scores = ops.sum(values[:, :, None] * c["phases"][None], axis=1)  # [batch, m]
            chosen = ops.one_hot(tf.argmax(scores, axis=1), len(self.profile), dtype="float32")
            base = base + ops.sum(chosen[:, :, None] * offsets[None], axis=1)
        return keras.ops.cast(changes, self.compute_dtype) + keras.ops.cast(
            base, self.compute_dtype
        )

    def get_config(self):
        names = ("feature_index", "window", "horizon", "profile")
        return {**super().get_config(), **{n: getattr(self, n) for n in names}}


@keras.saving.register_keras_serializable(package="timeseries_lstm")
class LogFeature(keras.layers.Layer):
    """Takes the natural log of one feature of a window [B, T, F] (a positive target).

    Args:
        feature_index: the feature (last axis) to transform.
    """

    def __init__(self, feature_index: int, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(feature_index, int) or feature_index < 0:
            raise ValueError(
                f"LogFeature expects feature_index >= 0 (an int), got {feature_index!r}."
            )
        self.feature_index = feature_index

    def call(self, inputs, training=False):
        features = keras.ops.shape(inputs)[-1]
        mask = keras.ops.cast(keras.ops.arange(features) == self.feature_index, inputs.dtype)
        safe = keras.ops.where(mask > 0, inputs, keras.ops.ones_like(inputs))
        return inputs * (1 - mask) + keras.ops.log(safe) * mask

    def get_config(self):
        return {**super().get_config(), "feature_index": self.feature_index}


@keras.saving.register_keras_serializable(package="timeseries_lstm")
class ScaledMeanAbsoluteError(keras.metrics.Mean):
    """MAE in original units of forecasts in normalized units (times std, plus mean, and
    exp when the model forecasts the log of the target)."""

    def __init__(
        self, scale: float = 1.0, offset: float = 0.0, log: bool = False, name="mae", **kwargs
    ):
        super().__init__(name=name, **kwargs)
        if scale <= 0:
            raise ValueError(f"ScaledMeanAbsoluteError expects scale > 0, got {scale}.")
        self.scale, self.offset, self.log = float(scale), float(offset), bool(log)

    def _original(self, y):
        y = keras.ops.cast(y, "float32") * self.scale + self.offset
        return keras.ops.exp(y) if self.log else y

    def update_state(self, y_true, y_pred, sample_weight=None):
        error = keras.ops.abs(self._original(y_true) - self._original(y_pred))
        return super().update_state(error, sample_weight=sample_weight)

    def get_config(self):
        return {
            **super().get_config(),
            "scale": self.scale,
            "offset": self.offset,
            "log": self.log,
        }


# Denoising: any image size through a U-Net, and its metric and loss


@keras.saving.register_keras_serializable(package="denoising_autoencoder")
class PadToMultiple(keras.layers.Layer):
    """Pads height and width (bottom/right) up to a multiple of `multiple`.

    Reflect padding where the image is large enough, zeros otherwise (tiny images).
    """

    def __init__(self, multiple: int, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(multiple, int) or multiple < 1:
            raise ValueError(f"PadToMultiple: multiple must be an integer >= 1, got {multiple!r}.")
        self.multiple = multiple

    def call(self, inputs):
        height, width = tf.shape(inputs)[1], tf.shape(inputs)[2]
        pad_h = (self.multiple - height % self.multiple) % self.multiple
        pad_w = (self.multiple - width % self.multiple) % self.multiple
        paddings = [[0, 0], [0, pad_h], [0, pad_w], [0, 0]]
        return tf.cond(
            tf.logical_and(pad_h < height, pad_w < width),
            lambda: tf.pad(inputs, paddings, mode="REFLECT"),
            lambda: tf.pad(inputs, paddings),
        )

    def compute_output_shape(self, input_shape):
        return (input_shape[0], None, None, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "multiple": self.multiple}


@keras.saving.register_keras_serializable(package="denoising_autoencoder")
class CropLike(keras.layers.Layer):
    """Crops the first input to the height and width of the second (undoes PadToMultiple)."""

    def call(self, inputs):
        image, reference = inputs
        return image[:, : tf.shape(reference)[1], : tf.shape(reference)[2], :]

    def compute_output_shape(self, input_shapes):
        image_shape, reference_shape = input_shapes
        return (image_shape[0], reference_shape[1], reference_shape[2], image_shape[3])


@keras.saving.register_keras_serializable(package="denoising_autoencoder")
def psnr(y_true, y_pred):
    """Mean PSNR in dB of a batch on a 0..1 scale (the prediction clipped to 0..1)."""
    return tf.image.psnr(y_true, tf.clip_by_value(y_pred, 0.0, 1.0), max_val=1.0)


@keras.saving.register_keras_serializable(package="denoising_autoencoder")
class SSIMLoss(keras.losses.Loss):
    """`ssim_weight * (1 - SSIM) + (1 - ssim_weight) * MAE` on a 0..1 scale."""

    def __init__(self, ssim_weight: float = 0.84, name: str = "ssim_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        if not 0.0 <= ssim_weight <= 1.0:
            raise ValueError(f"SSIMLoss: ssim_weight must be in [0, 1], got {ssim_weight}.")
        self.ssim_weight = ssim_weight

    def call(self, y_true, y_pred):
        ssim = tf.image.ssim(y_true, y_pred, max_val=1.0)
        mae = tf.reduce_mean(tf.abs(y_true - y_pred), axis=[1, 2, 3])
        return self.ssim_weight * (1.0 - ssim) + (1.0 - self.ssim_weight) * mae

    def get_config(self):
        return {**super().get_config(), "ssim_weight": self.ssim_weight}
