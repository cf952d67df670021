"""Convolutions in the forms XLA's CPU backend runs fast, with their gradients written out.

``conv2d`` is the one entry point the layers use: on a CPU backend it takes the rewritten
forms below (gradients as forward correlations, strided layers by phases, narrow output
layers as one matrix product, small inputs as one product of patches); on a GPU or TPU,
XLA's own convolution and autodiff's gradients. Every form gives the same numbers up to
float rounding (tests/test_layers.py, and in float64 tests/test_models.py); the measurements
behind each are in docs/speed.md.

``general_forward`` and ``general_backward`` are the rewritten convolution's two halves, and
``substituted`` traces ``conv2d`` with another convolution in their place: the seam
benchmarks/convolution_share.py uses to time the step without one role of every convolution.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp

_NHWC = ("NHWC", "HWIO", "NHWC")
Padding = tuple[tuple[int, int], tuple[int, int]]


def _correlate(x, kernel, stride: int, padding) -> jax.Array:
    smaller_than_kernel = x.shape[1] < kernel.shape[0] or x.shape[2] < kernel.shape[1]
    if smaller_than_kernel and stride == 1 and not isinstance(padding, str):
        return _correlate_by_patches(x, kernel, padding)
    return jax.lax.conv_general_dilated(x, kernel, (stride, stride), padding, dimension_numbers=_NHWC)


def _correlate_by_patches(x, kernel, padding) -> jax.Array:
    """The correlation as one product of the kh * kw shifted inputs with the kernel.

    For inputs smaller than the kernel, XLA's CPU convolution ran at 2-7 GFLOP/s where this
    product runs at ~80 (at 32x32 images, the input gradient of the discriminators' first
    4x4 classifier convolution correlates a 3x3 output gradient: 10% of the default step).
    """
    kh, kw, channels, out = kernel.shape
    padded = jnp.pad(x, ((0, 0), *padding, (0, 0)))
    ho, wo = padded.shape[1] - kh + 1, padded.shape[2] - kw + 1
    patches = jnp.concatenate([padded[:, i : i + ho, j : j + wo] for i in range(kh) for j in range(kw)], axis=-1)
    return jnp.dot(patches, kernel.reshape(kh * kw * channels, out))


# Which forms conv2d takes: "cpu", the rewritten forms below, or "native", XLA's convolution
# with autodiff's gradients. The rewrites work around XLA's CPU backend; on a GPU or TPU the
# native convolution and its gradients go to the vendor's kernels (cuDNN, the matrix units),
# where some rewrites would be poor (the kernel gradient as a correlation over the batch
# contracts over 1-8 elements). The default follows the backend; the variable overrides it,
# e.g. to compare both on one machine (benchmarks/train_step.py --convolutions).
CONVOLUTIONS_VARIABLE = "INSTAGAN_JAX_CONVOLUTIONS"
CONVOLUTION_FORMS = ("cpu", "native")


_forms_override: str | None = None


@contextlib.contextmanager
def using(forms: str) -> Iterator[None]:
    """Within the block, conv2d traces ``forms`` whatever the backend and the variable say: an
    ONNX export takes the native forms, which ONNX runtimes run with their own kernels."""
    global _forms_override
    if forms not in CONVOLUTION_FORMS:
        raise ValueError(f"convolution forms must be one of {CONVOLUTION_FORMS}, got {forms!r}")
    previous, _forms_override = _forms_override, forms
    try:
        yield
    finally:
        _forms_override = previous


def convolution_forms() -> str:
    """The forms conv2d takes: those of ``using``, else $INSTAGAN_JAX_CONVOLUTIONS if set, else "cpu"
    on a CPU backend. Read at trace time."""
    if _forms_override is not None:
        return _forms_override
    forms = os.environ.get(CONVOLUTIONS_VARIABLE) or ("cpu" if jax.default_backend() == "cpu" else "native")
    if forms not in CONVOLUTION_FORMS:
        raise ValueError(f"${CONVOLUTIONS_VARIABLE} must be one of {CONVOLUTION_FORMS}, got {forms!r}")
    return forms


def conv2d(x: jax.Array, kernel: jax.Array, stride: int, padding: Padding) -> jax.Array:
    """NHWC x HWIO cross-correlation; on CPU in the forms XLA's CPU backend runs fast.

    Same numbers as ``lax.conv_general_dilated`` up to float rounding; see
    ``benchmarks/profile_step.py`` for the measurements behind each form.
    """
    if convolution_forms() == "native":
        return jax.lax.conv_general_dilated(x, kernel, (stride, stride), padding, dimension_numbers=_NHWC)
    kh, kw, channels, out = kernel.shape
    if stride == 1 and out <= _FEW_OUTPUTS and channels >= _MANY_INPUTS and kh * kw > 1:
        return _conv_by_tap_products(x, kernel, padding)
    return (_substitute or _general)(x, kernel, stride, padding)


# A 7x7 convolution to 1-3 channels (the generators' output layers) ran at 0.4-1.3 GFLOP/s
# as a convolution, 50x slower than one matrix product to kh * kw * out channels followed
# by a shifted sum of those channels. From fewer inputs (only test-sized networks: every
# layer of the default and paper networks that narrows to few outputs reads 8 or more) its
# kh * kw shifted views cost more compile time (a fifth of the tiny test step's, 35 -> 28 s)
# than they save in the few steps such networks run (about 1 ms a layer at 32x32).
_FEW_OUTPUTS = 4
_MANY_INPUTS = 8


def _as_matrix(kernel: jax.Array) -> jax.Array:
    """(kh, kw, in, out) -> (in, kh * kw * out): one column per (tap, output channel)."""
    kh, kw, channels, out = kernel.shape
    return kernel.transpose(2, 0, 1, 3).reshape(channels, kh * kw * out)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv_by_tap_products(x: jax.Array, kernel: jax.Array, padding: Padding) -> jax.Array:
    """y[h, w] = sum over taps (i, j) of (x @ kernel[i, j])[h + i, w + j], as one product.

    The gradient is written out too: autodiff's gradient of the shifted sum is a fusion of
    kh * kw pads that ran slower than the convolution it replaces.
    """
    return _tap_products_forward(x, kernel, padding)[0]


def _tap_products_forward(x, kernel, padding):
    kh, kw, _, out = kernel.shape
    padded = jnp.pad(x, ((0, 0), *padding, (0, 0)))
    b, hp, wp, _ = padded.shape
    ho, wo = hp - kh + 1, wp - kw + 1
    taps = jnp.dot(padded, _as_matrix(kernel)).reshape(b, hp, wp, kh, kw, out)
    y = sum(taps[:, i : i + ho, j : j + wo, i, j] for i in range(kh) for j in range(kw))
    return y, (padded, kernel)


def _tap_products_backward(padding, residuals, dy):
    padded, kernel = residuals
    kh, kw, channels, out = kernel.shape
    b, hp, wp, _ = padded.shape
    # d taps[h, w, i, j] = dy[h - i, w - j] (zero outside): kh * kw shifted views of dy
    dy = jnp.pad(dy, ((0, 0), (kh - 1, kh - 1), (kw - 1, kw - 1), (0, 0)))
    shifted = [dy[:, kh - 1 - i : kh - 1 - i + hp, kw - 1 - j : kw - 1 - j + wp] for i in range(kh) for j in range(kw)]
    d_taps = jnp.stack(shifted, axis=3).reshape(b, hp, wp, kh * kw * out)
    d_padded = jnp.dot(d_taps, _as_matrix(kernel).T)
    (top, bottom), (left, right) = padding
    dx = d_padded[:, top : hp - bottom, left : wp - right]
    d_matrix = jnp.tensordot(padded.reshape(-1, channels), d_taps.reshape(-1, kh * kw * out), axes=(0, 0))
    return dx, d_matrix.reshape(channels, kh, kw, out).transpose(1, 2, 0, 3)


_conv_by_tap_products.defvjp(_tap_products_forward, _tap_products_backward)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _general(x: jax.Array, kernel: jax.Array, stride: int, padding: Padding) -> jax.Array:
    """A convolution whose gradients are written out as forward convolutions.

    Autodiff expresses them as convolutions with transposed dimension labels, which XLA's
    CPU backend rewrites into fast forward convolutions in straight-line code but not inside
    a while loop, where they ran 15-25x slower: a rolled ``lax.scan`` over instance chunks
    was 6x slower than the unrolled one. Here the input gradient is the output gradient
    correlated with the flipped kernel, and the kernel gradient the inputs correlated with
    the output gradient over the batch (one forward convolution each; with Eigen's
    convolutions, see xla_options, faster at every size than one matrix product per kernel
    tap, and half the memory); a strided convolution's are those of its stride-1 phases.
    """
    return _correlate(x, kernel, stride, padding)


def general_forward(x, kernel, stride, padding):
    return _correlate(x, kernel, stride, padding), (x, kernel)


def general_backward(stride, padding, residuals, dy):
    x, kernel = residuals
    (top, bottom), (left, right) = padding
    padded = jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    if stride == 1:
        return _input_gradient(dy, kernel, padding), _kernel_gradient(padded, dy)
    d_padded, dk = _strided_gradients_by_phases(padded, kernel, stride, dy)
    h, w = x.shape[1:3]
    return d_padded[:, top : top + h, left : left + w], dk


def _input_gradient(dy: jax.Array, kernel: jax.Array, padding: Padding) -> jax.Array:
    """The input gradient of a stride-1 correlation: dy correlated with the flipped kernel."""
    (kh, kw), ((top, bottom), (left, right)) = kernel.shape[:2], padding
    flipped = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)  # (kh, kw, out, in)
    return _correlate(dy, flipped, 1, ((kh - 1 - top, kh - 1 - bottom), (kw - 1 - left, kw - 1 - right)))


def _kernel_gradient(padded: jax.Array, dy: jax.Array) -> jax.Array:
    """The kernel gradient of a VALID stride-1 correlation: the inputs correlated with the
    output gradient, the batch as the contraction ((in, H, W, batch) with (ho, wo, batch, out))."""
    dk = _correlate(padded.transpose(3, 1, 2, 0), dy.transpose(1, 2, 0, 3), 1, "VALID")
    return dk.transpose(1, 2, 0, 3)


def _fit(x: jax.Array, sizes: tuple[int, int], axes: tuple[int, int]) -> jax.Array:
    """x cut or zero-padded at the end to ``sizes`` along ``axes``."""
    config = [(0, 0, 0)] * x.ndim
    for size, axis in zip(sizes, axes, strict=True):
        config[axis] = (0, size - x.shape[axis], 0)
    return jax.lax.pad(x, jnp.zeros((), x.dtype), config)


def interleave_phases(phases: list[jax.Array]) -> jax.Array:
    """s * s (B, H, W, C) phases, phase (a, b) at index a * s + b -> (B, s H, s W, C), phase (a, b)
    at rows a::s and columns b::s."""
    stride = math.isqrt(len(phases))
    rows = [jnp.stack(phases[a * stride : (a + 1) * stride], axis=3) for a in range(stride)]  # (B, H, W, s, C)
    y = jnp.stack(rows, axis=2)  # (B, H, s, W, s, C)
    batch, h, _, w, _, channels = y.shape
    return y.reshape(batch, stride * h, stride * w, channels)


def _strided_gradients_by_phases(padded, kernel, stride: int, dy):
    """Both gradients of a VALID stride-s correlation of ``padded``, as s * s stride-1 ones.

    With the input's phase x_ab = padded[a::s, b::s] and the kernel's k_ab = kernel[a::s, b::s],
    the strided correlation is the sum over (a, b) of the stride-1 correlations of x_ab with
    k_ab, so each phase's gradients are a stride-1 correlation's. XLA's CPU backend computes
    strided ones with dilated operands: the encoders' and discriminators' strided layers'
    kernel gradients ran at 30-180 GFLOP/s, these at 100-280 (docs/speed.md).
    """
    kh, kw, channels, out = kernel.shape
    batch, ho, wo, _ = dy.shape
    taps = (-(-kh // stride), -(-kw // stride))  # the most taps of a kernel phase
    rows = (ho + taps[0] - 1, wo + taps[1] - 1)  # the rows and columns an input phase needs
    phases = _fit(padded, (stride * rows[0], stride * rows[1]), (1, 2))
    phases = phases.reshape(batch, rows[0], stride, rows[1], stride, channels)
    dk_phases, dx_phases = [], []
    for a in range(stride):
        for b in range(stride):
            k_ab = kernel[a::stride, b::stride]
            if 0 in k_ab.shape:  # a kernel smaller than the stride never reads this phase
                dk_phases.append(jnp.zeros((*taps, channels, out), kernel.dtype))
                dx_phases.append(jnp.zeros((batch, *rows, channels), dy.dtype))
                continue
            x_ab = phases[:, : ho + k_ab.shape[0] - 1, a, : wo + k_ab.shape[1] - 1, b]
            dk_phases.append(_fit(_kernel_gradient(x_ab, dy), taps, (0, 1)))
            dx_phases.append(_fit(_input_gradient(dy, k_ab, ((0, 0), (0, 0))), rows, (1, 2)))
    # phase (a, b)'s tap (q, r) is the kernel's tap (s q + a, s r + b); likewise for input rows
    dk = interleave_phases([p.reshape(1, *taps, channels * out) for p in dk_phases])
    dk = dk.reshape(stride * taps[0], stride * taps[1], channels, out)[:kh, :kw]
    return _fit(interleave_phases(dx_phases), padded.shape[1:3], (1, 2)), dk


_general.defvjp(general_forward, general_backward)


_substitute: Callable | None = None


@contextlib.contextmanager
def substituted(convolution: Callable) -> Iterator[None]:
    """Within the block, ``conv2d`` traces ``convolution(x, kernel, stride, padding)`` wherever it
    would take the rewritten general form (the narrow output layers keep theirs)."""
    global _substitute
    previous, _substitute = _substitute, convolution
    try:
        yield
    finally:
        _substitute = previous
