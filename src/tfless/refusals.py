"""The documented refusals: Keras classes and keras.ops calls tfless will not run, and why.

Every public Keras 3 layer class, every tf_keras 2.x layer class and every keras.ops
operation that Keras records as a node in a functional model either has an op in the
registry or an entry here (tests/ops/test_keras_coverage.py enforces this). The reader
raises `UnsupportedLayer` with the reason when a file uses one of them, so a user learns
why instead of reading a list of what is supported.

Keys are Keras class names; keras.ops operations are keyed `keras.ops.<Class>`.
"""

from __future__ import annotations

FOREIGN_CODE = ("its computation is code from another framework stored or referenced by the "
                "file (tfless never runs code from a model file)")
BASE_CLASS = ("it is an abstract base class: a saved model names the concrete subclass "
              "instead, and a custom subclass is Python code tfless cannot run")
CELL = ("an RNN cell only runs inside an RNN layer (RNN/Bidirectional), which tfless "
        "supports; a cell called on its own is a single manual step with explicit states")
TRAINING_ONLY = "it is a training-time computation (a loss or metric), not part of inference"
CONTROL_FLOW = ("its body is a Python function traced by Keras (control flow); the file "
                "stores no graph for it that tfless could run")
COMPLEX = "it produces or consumes complex numbers, which tfless's float32 kernels do not carry"
DYNAMIC_SHAPE = ("its output shape depends on the values of its input, which a saved static "
                 "graph (and tfless's planned buffers) cannot express")
GRAPH_MODE = ("Keras's TensorFlow backend cannot run it inside a model's graph (it needs "
              "eager tensors), so no saved model can call it")
RANDOM = "its result is random (a new draw per call), so no inference answer can match"

REFUSALS: dict[str, str] = {
    # ----- layer classes ------------------------------------------------------------
    "Lambda": "a Lambda layer's function is Python code stored in the file; " + FOREIGN_CODE,
    "TFSMLayer": "it wraps a TensorFlow SavedModel's callable endpoint: " + FOREIGN_CODE
                 + "; load the SavedModel itself with tfless instead",
    "JaxLayer": "it wraps a JAX function: " + FOREIGN_CODE,
    "FlaxLayer": "it wraps a Flax module: " + FOREIGN_CODE,
    "TorchModuleWrapper": "it wraps a PyTorch module: " + FOREIGN_CODE,
    "Layer": BASE_CLASS,
    "Wrapper": BASE_CLASS,
    "AbstractRNNCell": BASE_CLASS,
    "SimpleRNNCell": CELL,
    "GRUCell": CELL,
    "LSTMCell": CELL,
    "StackedRNNCells": CELL,
    "PreprocessingLayer": BASE_CLASS,
    "DynamicEmbedding": ("its vocabulary changes while training (a dynamic lookup table "
                         "updated by callbacks), which a saved file does not pin down"),
    "DynamicLookup": ("its vocabulary changes while training (a dynamic lookup table "
                      "updated by callbacks), which a saved file does not pin down"),
    "SpectralNormalization": ("wrappers other than TimeDistributed/Bidirectional are not "
                              "implemented; at inference it equals its wrapped layer with the "
                              "stored kernel, so save the wrapped layer instead"),
    "Pipeline": ("a preprocessing Pipeline applies its layers outside the model graph (tf.data "
                 "style); build the model from the layers themselves"),
    "DenseFeatures": ("it reads tf.feature_column definitions (Python objects pickled into the "
                      "config) from a dict of raw features; use Keras preprocessing layers"),
    "ContrastLimitedAdaptiveHistogramEqualization": (
        "CLAHE's per-tile histogram clipping and bilinear tile blending are not implemented; "
        "apply it to the images before calling the model"),
    "Equalization": ("Keras cannot record it in a model: its symbolic output is its own input, "
                     "which Keras reports as a cycle (it only equalizes when training anyway)"),
    "MelSpectrogram": ("audio front ends (STFT, mel filter bank) are not implemented; compute "
                       "the spectrogram before calling the model"),
    "STFTSpectrogram": ("audio front ends (STFT, mel filter bank) are not implemented; compute "
                        "the spectrogram before calling the model"),
    # ----- keras.ops: control flow and structure -------------------------------------
    "keras.ops.Function": CONTROL_FLOW,
    "keras.ops.Map": CONTROL_FLOW,
    "keras.ops.Scan": CONTROL_FLOW,
    "keras.ops.AssociativeScan": CONTROL_FLOW,
    "keras.ops.Switch": CONTROL_FLOW,
    "keras.ops.WhileLoop": CONTROL_FLOW,
    "keras.ops.ForiLoop": CONTROL_FLOW,
    "keras.ops.Cond": CONTROL_FLOW,
    "keras.ops.VectorizedMap": CONTROL_FLOW,
    "keras.ops.JVP": "it is automatic differentiation (a Jacobian-vector product); "
                     + CONTROL_FLOW,
    # ----- keras.ops: training-time computations --------------------------------------
    "keras.ops.BinaryCrossentropy": TRAINING_ONLY,
    "keras.ops.CategoricalCrossentropy": TRAINING_ONLY,
    "keras.ops.SparseCategoricalCrossentropy": TRAINING_ONLY,
    "keras.ops.CTCLoss": TRAINING_ONLY,
    "keras.ops.PSNR": TRAINING_ONLY,
    "keras.ops.SSIM": TRAINING_ONLY,
    # ----- keras.ops: complex numbers ---------------------------------------------
    "keras.ops.FFT": COMPLEX, "keras.ops.FFT2": COMPLEX, "keras.ops.IFFT2": COMPLEX,
    "keras.ops.RFFT": COMPLEX, "keras.ops.IRFFT": COMPLEX, "keras.ops.STFT": COMPLEX,
    "keras.ops.ISTFT": COMPLEX, "keras.ops.ViewAsComplex": COMPLEX,
    "keras.ops.ViewAsReal": COMPLEX, "keras.ops.Polar": COMPLEX, "keras.ops.Angle": COMPLEX,
    "keras.ops.Eig": COMPLEX + " (general eigenvalues are complex)",
    # ----- keras.ops: value-dependent output shapes ------------------------------------
    "keras.ops.Nonzero": DYNAMIC_SHAPE,
    "keras.ops.Unique": DYNAMIC_SHAPE,
    "keras.ops.Bincount": DYNAMIC_SHAPE + " (its length is the largest input value)",
    "keras.ops.Arange": DYNAMIC_SHAPE + " (its length comes from tensor arguments)",
    "keras.ops.Histogram": DYNAMIC_SHAPE + " (bin edges come from the data range)",
    "keras.ops.CTCDecode": DYNAMIC_SHAPE + " (decoded sequences of varying length)",
    "keras.ops.Digitize": GRAPH_MODE,
    "keras.ops.IsIn": GRAPH_MODE,
    "keras.ops.Kron": GRAPH_MODE,
    "keras.ops.Corrcoef": GRAPH_MODE,
    "keras.ops.Nanmedian": GRAPH_MODE,
    "keras.ops.Nanquantile": GRAPH_MODE,
    "keras.ops.Nanpercentile": GRAPH_MODE,
    # ----- keras.ops: undefined or random values ------------------------------------
    "keras.ops.EmptyLike": "its values are uninitialized memory, so no answer can match",
    "keras.ops.ElasticTransform": RANDOM,
    # ----- keras.ops: decompositions without a unique answer --------------------------
    "keras.ops.Eigh": ("eigenvectors are unique only up to sign (and order among equal "
                       "eigenvalues), so results cannot match another library's"),
    "keras.ops.SVD": ("singular vectors are unique only up to sign, so results cannot match "
                      "another library's"),
    "keras.ops.Qr": "a QR factorization is unique only up to the signs of R's diagonal",
    "keras.ops.LuFactor": "its pivoting order is implementation-defined",
    "keras.ops.Argpartition": ("the order within each side of the pivot is implementation-"
                               "defined, so results cannot match; use argsort or top_k"),
    "keras.ops.SegmentReduction": BASE_CLASS,
    "keras.ops.ConvTranspose": ("keras.ops.conv_transpose as a raw operation node is not "
                                "implemented; use a Conv1DTranspose/Conv2DTranspose/"
                                "Conv3DTranspose layer, which tfless runs"),
    # ----- keras.ops: image filters and patch ops not implemented -----------------------
    "keras.ops.Rearrange": ("einops-style rearrange patterns are not implemented; use "
                            "keras.ops.reshape/transpose"),
    "keras.ops.Fold": "patch folding (col2im) is not implemented; apply it outside the model",
    "keras.ops.Unfold": "patch unfolding (im2col) is not implemented; apply it outside the model",
    "keras.ops.ExtractPatches": ("patch extraction is not implemented; use a Conv layer or "
                                 "apply it outside the model"),
    "keras.ops.GaussianBlur": "image filtering is not implemented; apply it before the model",
    "keras.ops.SobelEdges": "image filtering is not implemented; apply it before the model",
    "keras.ops.RGBToHSV": ("color-space conversion is not implemented; convert before the "
                           "model"),
    "keras.ops.HSVToRGB": ("color-space conversion is not implemented; convert before the "
                           "model"),
    # ----- keras.ops: geometric image warps -----------------------------------------
    "keras.ops.AffineTransform": ("image warps (affine/perspective/coordinate maps with "
                                  "fill modes) are not implemented"),
    "keras.ops.PerspectiveTransform": ("image warps (affine/perspective/coordinate maps with "
                                       "fill modes) are not implemented"),
    "keras.ops.MapCoordinates": ("image warps (affine/perspective/coordinate maps with "
                                 "fill modes) are not implemented"),
    "keras.ops.ScaleAndTranslate": ("image warps (affine/perspective/coordinate maps with "
                                    "fill modes) are not implemented"),
}


def refusal(name: str) -> str | None:
    """Why tfless refuses Keras class (or `keras.ops.<Class>`) `name`, or None."""
    return REFUSALS.get(name)
