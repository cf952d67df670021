"""The XLA compiler options of the train steps and of prediction (on CPU, convolutions by
Eigen), and of programs that run once (little optimisation).

XLA's CPU backend hands convolutions to YNNPACK by default (together with dots and
reductions). For this model's convolutions Eigen's are faster, in the train steps and in the
masker's prediction alike (benchmarks/train_step.py; the measurements are in docs/speed.md).
So the option lists the default fusion types without ``INDIVIDUAL_CONVOLUTION``. Options are per program
(``jax.jit(compiler_options=...)``), not process-wide flags: other programs keep XLA's
defaults. A JAX whose XLA no longer knows the option gets none, with a warning, rather
than a step that does not compile.

A program that runs once, the train state's init (random weights, zero moments, empty
pools), gains nothing from XLA's optimisation and paid for it on every first start: at the
default config it compiled in 12.6-21 s and ran in 0.02 s; at optimisation level 0 it
compiles in 5.5-6.3 s and runs in 0.08 s, the weights equal up to float rounding (2.2e-7).
"""

from __future__ import annotations

import functools

import jax
from absl import logging

CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"}
RUN_ONCE_OPTIONS = {"xla_backend_optimization_level": 0}


def _if_accepted(options: dict, what: str) -> dict:
    """``options`` if this backend's XLA compiles with them, else none (with a warning naming ``what``)."""
    try:
        jax.jit(lambda x: x + 1, compiler_options=options).lower(1.0).compile()
    except jax.errors.JaxRuntimeError as e:
        logging.warning("XLA does not take the %s, using its defaults: %s", what, e)
        return {}
    return options


@functools.cache
def compiler_options() -> dict[str, str]:
    """CPU_OPTIONS on a CPU backend that accepts them, else none. Call after the backend is chosen."""
    if jax.default_backend() != "cpu":
        return {}
    return _if_accepted(CPU_OPTIONS, "CPU convolution options")


@functools.cache
def run_once_options() -> dict[str, int]:
    """RUN_ONCE_OPTIONS where XLA accepts them: for a program that is compiled to run once."""
    return _if_accepted(RUN_ONCE_OPTIONS, "options for programs that run once")


def jit_at_first_call(fun, **jit_kwargs):
    """``jax.jit(fun, compiler_options=compiler_options(), **jit_kwargs)``, built when first called.

    For module-level programs: the options depend on the backend, which must not be chosen at
    import (a multi-process run chooses it only after ``jax.distributed.initialize``).
    """
    compiled = functools.cache(lambda: jax.jit(fun, compiler_options=compiler_options(), **jit_kwargs))
    return functools.wraps(fun)(lambda *args, **kwargs: compiled()(*args, **kwargs))
