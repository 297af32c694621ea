"""Categorical preprocessing layers: CategoryEncoding, Discretization, Hashing,
HashedCrossing, IntegerLookup, StringLookup and TextVectorization.

They turn values (numbers or strings) into indices and encode those as one/multi-hot or
count vectors, exactly as Keras's TensorFlow route does (its bincount fast path for rank
<= 2, one-hot reductions otherwise). String tensors are NumPy object arrays of `str`
(see `tfless.model`). Vocabularies come from the layer config (given to the constructor)
or, for a `.keras` file, from the layer's `vocabulary.txt` asset that `adapt()` leaves
(the reader puts it in the config); formats that keep no vocabulary are refused by name.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from ..errors import InputError, ModelFormatError, UnsupportedLayer
from ..registry import register
from . import string_hash

F32 = np.float32
INT64_MAX = np.iinfo(np.int64).max
ENCODINGS = ("int", "one_hot", "multi_hot", "count")


def _dtype(config: dict[str, Any], default: str) -> np.dtype:
    value = config.get("dtype")
    if isinstance(value, dict):
        value = (value.get("config") or {}).get("name")
    if not isinstance(value, str) or value.startswith(("mixed_", "float32_from")):
        value = default
    return np.dtype(value)


def _output_mode(config: dict[str, Any], allowed: tuple[str, ...]) -> str:
    mode = config.get("output_mode", "int")
    mode = {"binary": "multi_hot", "tf-idf": "tf_idf"}.get(mode, mode)
    if mode not in allowed:
        raise UnsupportedLayer(f"layer '{config.get('name', '')}': output_mode='{mode}' is not "
                               f"supported; supported: {', '.join(allowed)}")
    if config.get("sparse"):
        raise UnsupportedLayer(f"layer '{config.get('name', '')}': sparse=True outputs are not "
                               "supported (tfless computes dense tensors); save with sparse=False")
    return mode


def _one_hot(x: np.ndarray, depth: int, dtype: np.dtype) -> np.ndarray:
    """tf.one_hot: a new last axis; out-of-range indices give all-zero rows."""
    return (x[..., None] == np.arange(depth)).astype(dtype)


def _bincount(x: np.ndarray, depth: int, binary: bool, dtype: np.dtype,
              weights: np.ndarray | None) -> np.ndarray:
    """TF's dense bincount over the last axis (rank 1: the whole vector is one sample);
    values outside [0, depth) count nothing."""
    hot = x[..., None] == np.arange(depth)
    if binary:
        return np.any(hot, axis=-2).astype(dtype)
    if weights is not None:
        return np.sum(hot * weights[..., None], axis=-2).astype(weights.dtype)
    return np.sum(hot, axis=-2).astype(dtype)


def encode(x: np.ndarray, mode: str, depth: int, dtype: np.dtype,
           weights: np.ndarray | None = None) -> np.ndarray:
    """Keras's encode_categorical_inputs on the TensorFlow backend."""
    if mode == "int":
        return x.astype(dtype)
    if x.ndim == 0:
        x = x[None]
    if mode in ("multi_hot", "count") and x.ndim <= 2:
        return _bincount(x, depth, mode == "multi_hot", dtype, weights)
    if mode == "one_hot":
        if x.ndim > 1 and x.shape[-1] == 1:
            x = x[..., 0]
        return _one_hot(x, depth, dtype)
    hot = _one_hot(x, depth, dtype if weights is None else weights.dtype)
    if mode == "multi_hot":
        return np.max(hot, axis=1)
    if weights is not None:
        hot = hot * weights[..., None]
    return np.sum(hot, axis=1)


def _positive_int(config: dict[str, Any], field: str) -> int:
    value = config.get(field)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ModelFormatError(f"layer '{config.get('name', '')}': `{field}` must be a positive "
                               f"integer. Received: {field}={value!r}")
    return value


# ----- CategoryEncoding and Discretization -------------------------------------------------

@register("CategoryEncoding")
def build_category_encoding(config: dict, weights: dict) -> Any:
    mode = _output_mode(config, ("one_hot", "multi_hot", "count"))
    depth = _positive_int(config, "num_tokens")
    dtype = _dtype(config, "float32")
    count_input = _count_weights_input(config)

    def run(x: np.ndarray, *extra: np.ndarray) -> np.ndarray:
        w = None
        if count_input is not None:
            w = np.asarray((x, *extra)[count_input], dtype=dtype)
        return encode(np.asarray(x).astype(np.int64), mode, depth, dtype, w)

    return run


def _count_weights_input(config: dict[str, Any]) -> int | None:
    """Input index of a `count_weights=` tensor argument (Keras 3 records it in the call)."""
    for source in ((config.get("call_kwargs") or {}).get("count_weights"),
                   *(config.get("call_args") or [])[1:2]):
        if isinstance(source, dict) and "__tensor__" in source:
            return int(source["__tensor__"])
    return None


@register("Discretization")
def build_discretization(config: dict, weights: dict) -> Any:
    name = config.get("name", "")
    mode = _output_mode(config, ENCODINGS)
    bounds = config.get("bin_boundaries")
    if not bounds:
        raise ModelFormatError(f"layer '{name}': Discretization has no `bin_boundaries` in its "
                               "config (it was never adapted or given boundaries)")
    edges = np.asarray(bounds, dtype=F32)
    dtype = np.dtype(np.int32) if mode == "int" else _dtype(config, "float32")

    def run(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        # TF's Bucketize: the number of boundaries <= x (float32 boundaries)
        values = x if x.dtype.kind == "f" else x.astype(np.float64)
        idx = np.searchsorted(edges, values, side="right").astype(np.int32)
        return encode(idx, mode, len(edges) + 1, dtype)

    return run


# ----- Hashing and HashedCrossing ----------------------------------------------------------

def _salt(config: dict[str, Any]) -> list[int] | None:
    salt = config.get("salt")
    if salt is None:
        return None
    if isinstance(salt, int):
        return [salt, salt]
    if isinstance(salt, (list, tuple)) and len(salt) == 2:
        return [int(s) for s in salt]
    raise ModelFormatError(f"layer '{config.get('name', '')}': `salt` must be an integer or two "
                           f"integers. Received: salt={salt!r}")


@register("Hashing")
def build_hashing(config: dict, weights: dict) -> Any:
    mode = _output_mode(config, ENCODINGS)
    bins = _positive_int(config, "num_bins")
    mask_value = config.get("mask_value")
    hash_fn = string_hash.keyed(_salt(config))
    dtype = _dtype(config, "int64" if mode == "int" else "float32")
    hash_bins = bins - 1 if mask_value is not None and bins > 1 else bins

    def run(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if mode == "one_hot" and x.ndim and x.shape[-1] == 1:
            x = x[..., 0]
        idx = string_hash.hash_buckets(string_hash.as_tf_strings(x), hash_bins, hash_fn)
        if hash_bins != bins:  # bin 0 is reserved for the mask value
            idx = np.where(x == mask_value, 0, idx + 1)
        return encode(idx, mode, bins, dtype)

    return run


def _cross_feature(x: np.ndarray) -> np.ndarray:
    """Per-value 64-bit feature hashes: strings are fingerprinted, integers used as is."""
    if x.dtype == object:
        flat = x.reshape(-1)
        unique, inverse = np.unique(flat, return_inverse=True)
        table = [string_hash.fingerprint64(str(u).encode("utf-8")) for u in unique]
        return np.array([table[i] for i in inverse], dtype=object).reshape(x.shape)
    if x.dtype.kind not in "iu":
        raise InputError(f"HashedCrossing takes integer or string features, got {x.dtype}")
    return (x.astype(np.int64).astype(np.uint64)).astype(object)


@register("HashedCrossing")
def build_hashed_crossing(config: dict, weights: dict) -> Any:
    name = config.get("name", "")
    mode = _output_mode(config, ("int", "one_hot"))
    bins = _positive_int(config, "num_bins")
    dtype = _dtype(config, "int64" if mode == "int" else "float32")

    def run(*features: Any) -> np.ndarray:
        if len(features) == 1 and isinstance(features[0], (list, tuple)):
            features = tuple(features[0])
        if len(features) < 2:
            raise InputError(f"layer '{name}' crosses at least two features, got {len(features)}")
        arrays = [np.asarray(f) for f in features]
        if len({a.shape for a in arrays}) != 1:
            raise InputError(f"layer '{name}': features must have one shape, got "
                             f"{[a.shape for a in arrays]}")
        if arrays[0].ndim == 2 and arrays[0].shape[1] != 1:
            raise UnsupportedLayer(f"layer '{name}': crossing features of width "
                                   f"{arrays[0].shape[1]} is not supported (one value per row)")
        hashed = np.full(arrays[0].shape, string_hash.CROSS_DEFAULT_KEY, dtype=object)
        for feature in map(_cross_feature, arrays):
            hashed = np.frompyfunc(string_hash.fingerprint_cat64, 2, 1)(hashed, feature)
        idx = np.asarray((hashed % bins).astype(np.int64))
        return encode(idx, mode, bins, dtype)

    return run


# ----- IntegerLookup / StringLookup ---------------------------------------------------------

class Lookup:
    """One IndexLookup configuration: forward (value -> index) or inverted (index -> value)."""

    def __init__(self, config: dict[str, Any], strings: bool) -> None:
        self.name = config.get("name", "")
        self.strings = strings
        self.invert = bool(config.get("invert", False))
        self.mode = _output_mode(config, ("int", *ENCODINGS[1:], "tf_idf") if not self.invert
                                 else ("int",))
        self.num_oov = int(config.get("num_oov_indices", 1))
        self.mask_token = config.get("mask_token")
        self.oov_token = config.get("oov_token", "[UNK]" if strings else -1)
        self.oov_method = config.get("oov_method", "floormod")
        self.salt = _salt(config)
        self.oov_start = 1 if self.mask_token is not None and self.mode == "int" else 0
        self.token_start = self.oov_start + self.num_oov
        tokens = self._tokens(config)
        self.tokens = np.asarray(tokens, dtype=object if strings else np.int64)
        self.size = self.token_start + len(tokens)
        self.depth = int(config["max_tokens"]) if config.get("pad_to_max_tokens") else self.size
        self.default = (self.oov_start if self.num_oov == 1 else -1)
        self.idf = None
        if self.mode == "tf_idf":
            self.idf = self._idf(config, len(tokens))

    def _tokens(self, config: dict[str, Any]) -> list:
        vocabulary = config.get("vocabulary")
        if isinstance(vocabulary, dict) and vocabulary.get("class_name") == "__numpy__":
            vocabulary = vocabulary.get("config", {}).get("value")
        if vocabulary is None or isinstance(vocabulary, str):
            raise UnsupportedLayer(
                f"layer '{self.name}': its vocabulary is not in the model config (learned with "
                "adapt() or read from a file, which Keras keeps in a side asset); tfless reads "
                "vocabularies passed as `vocabulary=[...]` to the layer's constructor, and "
                "adapted ones from a .keras file's assets: save the model with model.save('m.keras')"
            )
        vocab = [str(v) if self.strings else int(v) for v in vocabulary]
        special = [self.mask_token] * self.oov_start + [self.oov_token] * self.num_oov
        # Keras accepts the special tokens spelled out in front of the vocabulary
        self.front_padded = vocab[:self.token_start] == special
        if self.front_padded:
            vocab = vocab[self.token_start:]
        if not vocab:
            raise ModelFormatError(f"layer '{self.name}': the vocabulary is empty")
        return vocab

    def _idf(self, config: dict[str, Any], n_tokens: int) -> np.ndarray:
        saved = config.get("saved_idf_weights")
        if saved is not None:  # the .keras variable: already one weight per output index
            full = np.asarray(saved, dtype=F32).reshape(-1)
            if len(full) > self.depth:
                raise ModelFormatError(f"layer '{self.name}': the stored idf_weights hold "
                                       f"{len(full)} values for {self.depth} output indices")
            return np.concatenate([full, np.zeros(self.depth - len(full), F32)])
        idf = config.get("idf_weights")
        if idf is None:
            raise UnsupportedLayer(f"layer '{self.name}': output_mode='tf_idf' needs "
                                   "`idf_weights` in the config")
        idf = np.asarray(idf, dtype=F32)
        front = 0 if self.front_padded else self.token_start
        fill = F32(0) if self.front_padded else F32(np.average(idf))
        back = self.depth - front - len(idf) if config.get("pad_to_max_tokens") else 0
        return np.concatenate([np.full(front, fill, F32), idf, np.zeros(max(back, 0), F32)])

    def _oov_indices(self, x: np.ndarray) -> np.ndarray:
        if not self.strings and self.oov_method != "farmhash":
            return np.mod(x, self.num_oov)
        keys = x if self.strings else string_hash.as_tf_strings(x)
        return string_hash.hash_buckets(keys, self.num_oov, string_hash.keyed(self.salt))

    def forward(self, x: np.ndarray) -> np.ndarray:
        if self.strings:
            if x.dtype != object:
                raise InputError(f"layer '{self.name}' expects string inputs, got {x.dtype}")
        else:
            x = x.astype(np.int64)
        order = np.argsort(self.tokens, kind="stable")
        sorted_tokens = self.tokens[order]
        pos = np.clip(np.searchsorted(sorted_tokens, x), 0, len(order) - 1)
        found = sorted_tokens[pos] == x
        idx = np.where(found, order[pos] + self.token_start, self.default).astype(np.int64)
        if self.mask_token is not None:
            idx = np.where(x == self.mask_token, 0 if self.mode == "int" else INT64_MAX, idx)
        if self.num_oov == 0 and np.any(idx == -1):
            bad = x[idx == -1][:5]
            raise InputError(f"layer '{self.name}': with num_oov_indices=0 every input must be "
                             f"in the vocabulary; found {list(bad)}")
        if self.num_oov > 1:
            idx = np.where(idx == -1, self._oov_indices(x) + self.oov_start, idx)
        return idx

    def inverse(self, x: np.ndarray) -> np.ndarray:
        x = x.astype(np.int64)
        table = np.empty(self.size, dtype=object if self.strings else np.int64)
        table[:] = self.oov_token
        table[self.token_start:] = self.tokens
        inside = (x >= self.token_start) & (x < self.size)
        out = np.where(inside, table[np.clip(x, 0, self.size - 1)], self.oov_token)
        if self.mask_token is not None:
            out = np.where(x == 0, self.mask_token, out)
        return out.astype(object) if self.strings else out.astype(np.int64)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if self.invert:
            return self.inverse(x)
        idx = self.forward(x)
        if self.mode == "int":
            return idx
        out = encode(idx, "count" if self.mode == "tf_idf" else self.mode, self.depth,
                     np.dtype(np.int64))
        if self.idf is not None:
            out = out.astype(F32) * self.idf
        return out


def _lookup_weights(config: dict[str, Any]) -> list[str]:
    # tf_keras tf_idf layers store their idf weights as a variable as well as in the config
    # (Keras 3 .h5 files store none); the config's copy is the one used
    # (a .keras file's named variable is read into `saved_idf_weights` by the reader)
    mode = config.get("output_mode")
    return ["idf_weights"] if mode in ("tf_idf", "tf-idf") and "keras_major" in config \
        and "saved_idf_weights" not in config else []


@register("StringLookup", weights=_lookup_weights)
def build_string_lookup(config: dict, weights: dict) -> Any:
    return Lookup(config, strings=True)


@register("IntegerLookup", weights=_lookup_weights)
def build_integer_lookup(config: dict, weights: dict) -> Any:
    return Lookup(config, strings=False)


# ----- TextVectorization -----------------------------------------------------------------

PUNCTUATION = re.compile(r'[!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~\']')


def _standardizer(config: dict[str, Any]) -> Any:
    how = config.get("standardize", "lower_and_strip_punctuation")
    if how not in (None, "lower", "strip_punctuation", "lower_and_strip_punctuation"):
        raise UnsupportedLayer(f"layer '{config.get('name', '')}': standardize={how!r} is a "
                               "custom function, which tfless cannot run; supported: lower, "
                               "strip_punctuation, lower_and_strip_punctuation, None")

    def standardize(text: str) -> str:
        if how in ("lower", "lower_and_strip_punctuation"):
            text = text.lower()
        if how in ("strip_punctuation", "lower_and_strip_punctuation"):
            text = PUNCTUATION.sub("", text)
        return text

    return standardize


def _ngram_widths(config: dict[str, Any]) -> tuple[int, ...] | None:
    ngrams = config.get("ngrams")
    if ngrams is None:
        return None
    if isinstance(ngrams, int):
        return tuple(range(1, ngrams + 1))
    return tuple(int(n) for n in ngrams)


def _with_ngrams(tokens: list[str], widths: tuple[int, ...] | None) -> list[str]:
    if widths is None:
        return tokens
    return [" ".join(tokens[i:i + w]) for w in widths for i in range(len(tokens) - w + 1)]


@register("TextVectorization", weights=_lookup_weights)
def build_text_vectorization(config: dict, weights: dict) -> Any:
    name = config.get("name", "")
    if config.get("ragged"):
        raise UnsupportedLayer(f"layer '{name}': ragged=True outputs are not supported")
    split = config.get("split", "whitespace")
    if split not in (None, "whitespace", "character"):
        raise UnsupportedLayer(f"layer '{name}': split={split!r} is a custom function, which "
                               "tfless cannot run; supported: whitespace, character, None")
    standardize = _standardizer(config)
    widths = _ngram_widths(config)
    lookup = Lookup({**config, "mask_token": "", "oov_token": "[UNK]", "num_oov_indices": 1,
                     "invert": False}, strings=True)
    length = config.get("output_sequence_length")

    def tokens_of(text: str) -> list[str]:
        text = standardize(text)
        if split is None:
            return [text]
        parts = text.split() if split == "whitespace" else list(text)
        return _with_ngrams(parts, widths)

    def run(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.dtype != object:
            raise InputError(f"layer '{name}' expects string inputs, got {x.dtype}")
        if split is None:
            texts = np.vectorize(standardize, otypes=[object])(x)
            return lookup(texts)
        if x.ndim > 1:
            if x.shape[-1] != 1:
                raise InputError(f"layer '{name}': input must be rank 1 or end in 1, got "
                                 f"{x.shape}")
            x = x[..., 0]
        rows = [tokens_of(str(t)) for t in x.reshape(-1)]
        width = max((len(r) for r in rows), default=0) if length is None else int(length)
        if lookup.mode != "int":
            width = max((len(r) for r in rows), default=0)
        grid = np.full((len(rows), max(width, 0)), "", dtype=object)
        for i, row in enumerate(rows):  # ragged token lists: one Python pass per string
            row = row[:width]
            grid[i, :len(row)] = row
        grid = grid.reshape(x.shape + (grid.shape[1],))
        if lookup.mode == "int":
            return lookup(grid)
        idx = lookup.forward(grid)  # padding "" is the mask token: it counts nowhere
        out = encode(idx, "count" if lookup.mode == "tf_idf" else lookup.mode, lookup.depth,
                     np.dtype(np.int64))
        return out.astype(F32) * lookup.idf if lookup.idf is not None else out

    return run
