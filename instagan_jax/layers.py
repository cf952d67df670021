"""Building blocks shared by the generators and discriminators.

Every layer reproduces its PyTorch counterpart in the authors' code exactly (NHWC here,
NCHW there): parameter-free instance norm with eps 1e-5, reflect padding, explicit
integer padding for strided convolutions, and transposed convolutions padded so that
they double H and W the way ``ConvTranspose2d(3, 2, padding=1, output_padding=1)`` does.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

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
    """InstanceNorm2d(affine=False): per example and channel over H and W, biased var."""
    mean = jnp.mean(x, axis=(1, 2), keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=(1, 2), keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + eps)


def reflect_pad(x: jax.Array, pad: int) -> jax.Array:
    """ReflectionPad2d(pad) on an NHWC tensor."""
    return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")


def conv(features: int, kernel: int, stride: int = 1, padding: int = 0, name: str | None = None) -> nn.Conv:
    """A generator convolution with the reference's init and explicit padding."""
    return nn.Conv(
        features,
        (kernel, kernel),
        strides=(stride, stride),
        padding=((padding, padding), (padding, padding)),
        kernel_init=generator_kernel_init,
        name=name,
    )


class UpsampleConv(nn.Module):
    """ConvTranspose2d(k=3, s=2, padding=1, output_padding=1): doubles H and W exactly.

    Computed as its four output phases: one 2x2 stride-1 convolution with 4 x features
    outputs, then depth-to-space. That is the same sum as the transposed convolution, but
    XLA's CPU backend differentiates it about 50 times faster than an lhs-dilated conv.
    With torch's scatter definition y[2i - 1 + k] += x[i] w[k], even outputs take tap 1 of
    x[i]; odd outputs take tap 2 of x[i] and tap 0 of x[i + 1] (zero past the edge).
    The kernel is stored as (kh, kw, out, in), i.e. torch's (in, out, kh, kw).transpose(2, 3, 1, 0).
    """

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", generator_kernel_init, (3, 3, self.features, x.shape[-1]))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        w = jnp.transpose(kernel, (0, 1, 3, 2))  # (ky, kx, in, out)
        zero = jnp.zeros_like(w[0, 0])
        taps = {(0, 0): 1, (0, 1): None, (1, 0): 2, (1, 1): 0}  # (phase, offset) -> kernel tap
        phases = []
        for a in (0, 1):
            for b in (0, 1):
                rows = []
                for dy in (0, 1):
                    ky, cols = taps[(a, dy)], []
                    for dx in (0, 1):
                        kx = taps[(b, dx)]
                        cols.append(zero if ky is None or kx is None else w[ky, kx])
                    rows.append(jnp.stack(cols))
                phases.append(jnp.stack(rows))  # (2, 2, in, out)
        phase_kernel = jnp.concatenate(phases, axis=-1)  # (2, 2, in, 4 out), phase-major
        padded = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))
        y = jax.lax.conv_general_dilated(
            padded, phase_kernel, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        b_, h, w_, _ = y.shape
        y = (
            y.reshape(b_, h, w_, 2, 2, self.features)
            .transpose(0, 1, 3, 2, 4, 5)
            .reshape(b_, 2 * h, 2 * w_, self.features)
        )
        return y + bias


class ResnetBlock(nn.Module):
    """x + [pad, conv3x3, IN, ReLU, pad, conv3x3, IN](x)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        dim = x.shape[-1]
        y = conv(dim, 3, name="conv_0")(reflect_pad(x, 1))
        y = nn.relu(instance_norm(y))
        y = conv(dim, 3, name="conv_1")(reflect_pad(y, 1))
        return x + instance_norm(y)


class Encoder(nn.Module):
    """c7s1-ngf, d2ngf, d4ngf, then n_blocks residual blocks: (B, H, W, C) -> (B, H/4, W/4, 4ngf)."""

    ngf: int
    n_blocks: int = 9

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = conv(self.ngf, 7, name="conv_in")(reflect_pad(x, 3))  # (b, h, w, ngf)
        x = nn.relu(instance_norm(x))
        for i in range(2):
            x = conv(self.ngf * 2 ** (i + 1), 3, stride=2, padding=1, name=f"down_{i}")(x)  # (b, h/2^(i+1), ..)
            x = nn.relu(instance_norm(x))
        for i in range(self.n_blocks):
            x = ResnetBlock(name=f"block_{i}")(x)  # (b, h/4, w/4, 4ngf)
        return x


class Decoder(nn.Module):
    """u(2 width), u(width), c7s1-out_channels, tanh: (B, H/4, W/4, 4 width) -> (B, H, W, out).

    ``width`` is k * ngf where k is how many 4ngf feature maps were concatenated at the input.
    """

    width: int
    out_channels: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i in range(2):
            x = UpsampleConv(self.width * 2 ** (1 - i), name=f"up_{i}")(x)  # (b, 2x, 2x, ..)
            x = nn.relu(instance_norm(x))
        x = conv(self.out_channels, 7, name="conv_out")(reflect_pad(x, 3))
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
        y = jax.lax.conv_general_dilated(
            x,
            kernel / sigma,
            window_strides=(self.stride, self.stride),
            padding=((self.padding, self.padding), (self.padding, self.padding)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
        return y + bias
