"""Building blocks shared by the generators and discriminators.

Every layer reproduces its PyTorch counterpart in the authors' code exactly (NHWC here,
NCHW there): parameter-free instance norm with eps 1e-5, reflect padding, explicit
integer padding for strided convolutions, and transposed convolutions padded so that
they double H and W the way ``ConvTranspose2d(3, 2, padding=1, output_padding=1)`` does.
The convolutions themselves, in the forms each backend runs fast, are in convolution.py.
"""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from instagan_jax import convolution

# Generator weights: N(0, 0.02), biases 0 (the reference's init_weights('normal')).
generator_kernel_init = nn.initializers.normal(stddev=0.02)


def torch_default_init(fan_in: int):
    """PyTorch's default Conv2d init, uniform(+-1/sqrt(fan_in)), for weights and biases.

    The reference's init function skips spectral-norm-wrapped convolutions, so the
    discriminators keep this init rather than N(0, 0.02).
    """
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def instance_norm(x: jax.Array, eps: float = 1e-5) -> jax.Array:
    """InstanceNorm2d(affine=False): per example and channel over H and W, biased var.

    The statistics are at least float32 whatever x's dtype (a bfloat16 mean over 40,000 pixels keeps 3
    digits); the result has x's dtype.
    """
    y = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    mean = jnp.mean(y, axis=(1, 2), keepdims=True)
    var = jnp.mean(jnp.square(y - mean), axis=(1, 2), keepdims=True)
    return ((y - mean) * jax.lax.rsqrt(var + eps)).astype(x.dtype)


# The dtypes the networks compute in (ModelSpec.compute_dtype); parameters stay float32.
# Modules take ``dtype`` None for float32: no casts, so float64 inputs stay float64.
COMPUTE_DTYPES = ("float32", "bfloat16")


def module_dtype(compute_dtype: str) -> jnp.dtype | None:
    """A spec's compute_dtype as the modules take it: None (no casts) for float32."""
    return None if compute_dtype == "float32" else jnp.dtype(compute_dtype)


def cast(dtype, *arrays: jax.Array | None) -> tuple:
    """A layer's inputs and float32 parameters in the compute dtype (an array None stays None).
    ``dtype`` None: as they are (float32 networks, float64 in the tests of gradients)."""
    return arrays if dtype is None else tuple(None if a is None else a.astype(dtype) for a in arrays)


def network_output(x: jax.Array, dtype) -> jax.Array:
    """A network's output: float32 after a lower compute dtype, so that the losses are float32."""
    return x if dtype is None else x.astype(jnp.float32)


def sum_rows(x: jax.Array) -> jax.Array:
    """x.sum(axis=1) for a short axis 1 (an example's mask slots), as sums of halves.

    XLA's CPU backend reduces a short leading axis of a large array 20-80x slower than it
    adds two slices of it (2 x 64 x 64 x 192 floats: 7.6 ms against 0.3 ms), and these
    sums over slots, with their gradients, are on every generator and discriminator call.
    The loop runs over the log2 halvings of the static axis, not over the slots. Where the
    convolutions take XLA's own forms (a GPU or TPU: convolution.convolution_forms), the
    plain sum.
    """
    if convolution.convolution_forms() == "native":
        return x.sum(axis=1)
    while x.shape[1] > 1:
        half = x.shape[1] // 2
        folded = x[:, :half] + x[:, half : 2 * half]
        x = jnp.concatenate([folded, x[:, 2 * half :]], axis=1) if x.shape[1] % 2 else folded
    return x[:, 0]


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def repeat_rows(x: jax.Array, rows: int) -> jax.Array:
    """(G, ...) -> (G, rows, ...), each row a copy of x; its gradient sums the rows with sum_rows."""
    return jnp.broadcast_to(x[:, None], (x.shape[0], rows, *x.shape[1:]))


def _repeat_rows_forward(x, rows):
    return repeat_rows(x, rows), None


def _repeat_rows_backward(rows, _, dy):
    return (sum_rows(dy),)


repeat_rows.defvjp(_repeat_rows_forward, _repeat_rows_backward)


def reflect_pad(x: jax.Array, pad: int) -> jax.Array:
    """ReflectionPad2d(pad) on an NHWC tensor."""
    return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")


def edge_pad(x: jax.Array) -> jax.Array:
    """One row and column of edge pixels around an NHWC tensor: jnp.pad's "edge" mode written as
    concatenations, which jax2onnx converts correctly (its own conversion of the edge mode pads
    the channels too)."""
    x = jnp.concatenate([x[:, :1], x, x[:, -1:]], axis=1)
    return jnp.concatenate([x[:, :, :1], x, x[:, :, -1:]], axis=2)


class Conv(nn.Module):
    """A generator Conv2d with bias, the reference's init and explicit integer padding (parameters
    named as flax's nn.Conv's)."""

    features: int
    kernel_size: int
    stride: int = 1
    padding: int = 0
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k, p = self.kernel_size, self.padding
        kernel = self.param("kernel", generator_kernel_init, (k, k, x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        x, kernel, bias = cast(self.dtype, x, kernel, bias)
        return convolution.conv2d(x, kernel, self.stride, ((p, p), (p, p))) + bias


class ConvParams(nn.Module):
    """The kernel (k, k, in, out) and bias of a generator convolution, for layers that apply them their own way."""

    features: int
    kernel_size: int

    @nn.compact
    def __call__(self, in_features: int) -> tuple[jax.Array, jax.Array]:
        k = self.kernel_size
        kernel = self.param("kernel", generator_kernel_init, (k, k, in_features, self.features))
        return kernel, self.param("bias", nn.initializers.zeros, (self.features,))


def conv(features: int, kernel: int, stride: int = 1, padding: int = 0, dtype=None, name=None) -> Conv:
    """A generator convolution with the reference's init and explicit padding."""
    return Conv(features, kernel, stride, padding, dtype, name=name)


_PHASES = ((0, 0), (0, 1), (1, 0), (1, 1))  # (row parity, column parity) of a x2 upsampling's outputs


def _phase_kernels(kernel: jax.Array, folds: dict) -> list[jax.Array]:
    """The four output phases' kernels of a x2 upsampling layer, from its 3x3 kernel (3, 3, in, out).

    ``folds[parity]`` (n, 3) says which of the 3 taps along an axis each of that phase's n taps
    sums; phase (a, b) gets the outer combination of ``folds[a]`` and ``folds[b]``. All phases
    come from one product with a 0/1 matrix, and their gradient is one product back: picking
    taps by index differentiates into one zero-padded full-size copy of the kernel per tap,
    which the optimizer update then read, summed and transposed (measured with
    benchmarks/profile_step.py: docs/speed.md).
    """
    mixing = np.concatenate([np.kron(folds[a], folds[b]) for a, b in _PHASES])  # (taps of all phases, 9)
    kh, kw, channels, out = kernel.shape
    taps = jnp.tensordot(jnp.asarray(mixing, kernel.dtype), kernel.reshape(kh * kw, channels, out), axes=1)
    sizes = [len(folds[a]) * len(folds[b]) for a, b in _PHASES]
    pieces = jnp.split(taps, np.cumsum(sizes)[:-1])
    return [p.reshape(len(folds[a]), len(folds[b]), channels, out) for p, (a, b) in zip(pieces, _PHASES, strict=True)]


def _upsample(x: jax.Array, shared: jax.Array | None, kernel: jax.Array, folds: dict, convolve_phases) -> jax.Array:
    """A x2 upsampling layer (no bias) on [x, shared], with the part of ``shared`` computed once per group.

    ``kernel`` is (3, 3, in, out); ``convolve_phases(inputs, phase kernels)`` gives the four
    phase outputs. ``shared`` (G, H, W, C'), if given, is common to each group of
    len(x) / G consecutive rows of x and stands for its last C' input channels: the layer
    is linear in its input channels, so that part is convolved once per group and added,
    rather than once per row (the set generator's mask decoder, whose rows are an example's
    mask slots and whose input is 2/3 per-example context).

    On every backend, not only the CPU: the four phases skip the zeros a dilated (transposed)
    convolution multiplies, three quarters of its work; whether XLA's own transposed
    convolution beats them on a GPU is what benchmarks/gpu_check.sh would measure, and no GPU
    has run it yet.
    """
    c = x.shape[-1]
    y = convolution.interleave_phases(convolve_phases(x, _phase_kernels(kernel[:, :, :c], folds)))
    if shared is None:
        return y
    common = convolution.interleave_phases(convolve_phases(shared, _phase_kernels(kernel[:, :, c:], folds)))
    rows = y.shape[0] // shared.shape[0]
    return (y.reshape(shared.shape[0], rows, *y.shape[1:]) + repeat_rows(common, rows)).reshape(y.shape)


def _in_features(x: jax.Array, shared: jax.Array | None) -> int:
    return x.shape[-1] + (0 if shared is None else shared.shape[-1])


class UpsampleConv(nn.Module):
    """ConvTranspose2d(k=3, s=2, padding=1, output_padding=1): doubles H and W exactly.

    Computed as its four output phases, each a small stride-1 convolution, then interleaved.
    With torch's scatter definition y[2i - 1 + k] += x[i] w[k], even outputs take tap 1 of
    x[i]; odd outputs take tap 2 of x[i] and tap 0 of x[i + 1] (zero past the edge). So the
    (even, even) phase is a 1x1 convolution, the mixed ones 1x2 and 2x1, the (odd, odd) one
    2x2: the transposed convolution's 9 taps per input pixel and not one more (a single 2x2
    convolution to all four phases would multiply 7 of its 16 taps by zero), and none of
    the lhs-dilated convolutions that XLA's CPU backend differentiates 50 times slower.
    The kernel is stored as (kh, kw, out, in), i.e. torch's (in, out, kh, kw).transpose(2, 3, 1, 0).
    ``shared``: see ``_upsample``.
    """

    features: int
    dtype: jnp.dtype | None = None
    # parity -> the taps applied to x[i], x[i + 1] along an axis
    FOLDS = {0: np.array([[0, 1, 0]]), 1: np.array([[0, 0, 1], [1, 0, 0]])}

    @staticmethod
    def convolve_phases(x: jax.Array, kernels: list[jax.Array]) -> list[jax.Array]:
        return [convolution.conv2d(x, k, 1, ((0, a), (0, b))) for k, (a, b) in zip(kernels, _PHASES, strict=True)]

    @nn.compact
    def __call__(self, x: jax.Array, shared: jax.Array | None = None) -> jax.Array:
        kernel = self.param("kernel", generator_kernel_init, (3, 3, self.features, _in_features(x, shared)))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        x, shared, kernel, bias = cast(self.dtype, x, shared, kernel, bias)
        kernel = jnp.transpose(kernel, (0, 1, 3, 2))  # (ky, kx, in, out)
        return _upsample(x, shared, kernel, self.FOLDS, self.convolve_phases) + bias


class ResizeConv(nn.Module):
    """Nearest-neighbour x2 then reflect pad 1 and conv3x3: the upsampling of Odena et al. (2016).

    Every output pixel sees the same number of kernel taps, so there is no checkerboard; the
    transposed convolution (UpsampleConv) gives even and odd output pixels 1, 2 or 4 taps,
    which is where its grid pattern comes from. Not the authors' layer: their checkpoints need
    ``upsample="transpose"``.

    Computed at the input's resolution: along each axis an even output pixel 2i sees input
    pixels i - 1, i, i through the taps (0, 1, 2), an odd one i, i, i + 1, so each of the four
    output phases is a 2x2 convolution whose taps are sums of the 3x3 kernel's (even: w0 and
    w1 + w2; odd: w0 + w1 and w2), over the input padded by repeating its edge (the reflect
    pad of the upsampled image). A quarter of the FLOPs of convolving the upsampled image.
    ``shared``: see ``_upsample``.
    """

    features: int
    dtype: jnp.dtype | None = None
    # parity -> the sums of taps along an axis (even: w0, w1 + w2; odd: w0 + w1, w2)
    FOLDS = {0: np.array([[1, 0, 0], [0, 1, 1]]), 1: np.array([[1, 1, 0], [0, 0, 1]])}

    @staticmethod
    def convolve_phases(x: jax.Array, kernels: list[jax.Array]) -> list[jax.Array]:
        h, w = x.shape[1:3]
        edged = edge_pad(x)
        return [
            convolution.conv2d(edged[:, a : a + h + 1, b : b + w + 1], k, 1, ((0, 0), (0, 0)))
            for k, (a, b) in zip(kernels, _PHASES, strict=True)
        ]

    @nn.compact
    def __call__(self, x: jax.Array, shared: jax.Array | None = None) -> jax.Array:
        kernel, bias = ConvParams(self.features, 3, name="conv")(_in_features(x, shared))  # (3, 3, in, out)
        x, shared, kernel, bias = cast(self.dtype, x, shared, kernel, bias)
        return _upsample(x, shared, kernel, self.FOLDS, self.convolve_phases) + bias


UPSAMPLING = {"transpose": UpsampleConv, "resize_conv": ResizeConv}


class ResnetBlock(nn.Module):
    """x + [pad, conv3x3, IN, ReLU, pad, conv3x3, IN](x)."""

    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        dim = x.shape[-1]
        y = conv(dim, 3, dtype=self.dtype, name="conv_0")(reflect_pad(x, 1))
        y = nn.relu(instance_norm(y))
        y = conv(dim, 3, dtype=self.dtype, name="conv_1")(reflect_pad(y, 1))
        return x + instance_norm(y)


# ModelSpec.remat: what a training step's backward pass recomputes instead of keeping.
# "block": each residual block's inside (its input kept); "network": each generator and
# discriminator call (its input kept). A chunk's activations are already freed after its
# update by the sequential loop, so the coarsest useful unit is the network call.
REMAT = ("none", "block", "network")


class Encoder(nn.Module):
    """c7s1-ngf, d2ngf, d4ngf, then n_blocks residual blocks: (B, H, W, C) -> (B, H/4, W/4, 4ngf).

    ``remat_blocks``: recompute each block's inside in the backward pass (ModelSpec.remat "block").
    """

    ngf: int
    n_blocks: int = 9
    dtype: jnp.dtype | None = None
    remat_blocks: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = conv(self.ngf, 7, dtype=self.dtype, name="conv_in")(reflect_pad(x, 3))  # (b, h, w, ngf)
        x = nn.relu(instance_norm(x))
        for i in range(2):
            down = conv(self.ngf * 2 ** (i + 1), 3, stride=2, padding=1, dtype=self.dtype, name=f"down_{i}")
            x = nn.relu(instance_norm(down(x)))  # (b, h/2^(i+1), w/2^(i+1), ngf 2^(i+1))
        block = nn.remat(ResnetBlock) if self.remat_blocks else ResnetBlock
        for i in range(self.n_blocks):
            x = block(self.dtype, name=f"block_{i}")(x)  # (b, h/4, w/4, 4ngf)
        return x


class Decoder(nn.Module):
    """u(2 width), u(width), c7s1-out_channels, tanh: (B, H/4, W/4, 4 width) -> (B, H, W, out).

    ``width`` is k * ngf where k is how many 4ngf feature maps were concatenated at the input;
    ``upsample`` names the u layers (UPSAMPLING: the paper's "transpose" or "resize_conv").
    """

    width: int
    out_channels: int
    upsample: str = "transpose"
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array, shared: jax.Array | None = None) -> jax.Array:
        """``shared``: input channels common to groups of rows of x (see ``_upsample``)."""
        x = UPSAMPLING[self.upsample](self.width * 2, self.dtype, name="up_0")(x, shared)  # (b, h/2, w/2, 2 width)
        x = nn.relu(instance_norm(x))
        x = UPSAMPLING[self.upsample](self.width, self.dtype, name="up_1")(x)  # (b, h, w, width)
        x = nn.relu(instance_norm(x))
        x = conv(self.out_channels, 7, dtype=self.dtype, name="conv_out")(reflect_pad(x, 3))
        return jnp.tanh(x)


def _l2_normalize(v: jax.Array, eps: float = 1e-12) -> jax.Array:
    # The reference divides by (norm + eps), not sqrt(sum + eps).
    return v / (jnp.linalg.norm(v) + eps)


class SpectralConv(nn.Module):
    """Conv2d with bias wrapped in the reference's spectral normalisation.

    The power-iteration vector ``u`` (out_features,) lives in the ``spectral`` variable
    collection. Every call runs one power iteration from the stored ``u`` (as the
    reference does on each forward) and divides the kernel by the resulting sigma;
    the new ``u`` is written back only when ``update_stats`` is True (which then needs
    ``mutable=["spectral"]``). Gradients flow through sigma with u and v held fixed.
    """

    features: int
    kernel_size: int = 4
    stride: int = 2
    padding: int = 1
    dtype: jnp.dtype | None = None  # of the convolution; the power iteration and sigma are float32

    @nn.compact
    def __call__(self, x: jax.Array, update_stats: bool) -> jax.Array:
        k, in_features = self.kernel_size, x.shape[-1]
        init = torch_default_init(in_features * k * k)
        kernel = self.param("kernel", init, (k, k, in_features, self.features))
        bias = self.param("bias", init, (self.features,))
        u_var = self.variable(
            "spectral",
            "u",
            lambda: _l2_normalize(jax.random.normal(self.make_rng("params"), (self.features,))),
        )
        # torch views the weight (out, in, kh, kw) as (out, -1); the flattening order of the
        # second axis does not change sigma, u or the normalised weight.
        w = kernel.reshape(-1, self.features).T  # (out, k*k*in)
        u = jax.lax.stop_gradient(u_var.value)
        v = _l2_normalize(jax.lax.stop_gradient(w).T @ u)
        u = _l2_normalize(jax.lax.stop_gradient(w) @ v)
        sigma = u @ (w @ v)
        if update_stats and not self.is_initializing():
            u_var.value = u
        p = self.padding
        x, kernel, bias = cast(self.dtype, x, kernel / sigma, bias)
        return convolution.conv2d(x, kernel, self.stride, ((p, p), (p, p))) + bias
