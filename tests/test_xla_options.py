"""The compiler options of the step and of translation (convolutions away from YNNPACK on CPU), and of
programs that run once."""

import logging

import chex
import jax
import jax.numpy as jnp
import pytest

from instagan_jax import train_step as ts
from instagan_jax import xla_options
from instagan_jax.models import ModelSpec


def _convolutions_in_ynn_fusions(options) -> int:
    def conv(x, k):
        return jax.lax.conv_general_dilated(x, k, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))

    x, kernel = jnp.ones((1, 16, 16, 32)), jnp.ones((3, 3, 32, 32))  # XLA keeps smaller ones away from YNNPACK
    compiled = jax.jit(conv, compiler_options=options).lower(x, kernel).compile()
    lines = compiled.as_text().splitlines()
    return sum("ynn_fusion" in line and "kind=kCustom" in line and "conv_general_dilated" in line for line in lines)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="CPU compiler options")
def test_cpu_convolutions_leave_ynnpack_only_with_the_options():
    assert xla_options.compiler_options() == xla_options.CPU_OPTIONS
    # XLA's default: YNNPACK. If this fails, XLA changed its default and the option may have no point.
    assert _convolutions_in_ynn_fusions(None) >= 1
    assert _convolutions_in_ynn_fusions(xla_options.compiler_options()) == 0


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="CPU compiler options")
def test_options_xla_does_not_know_fall_back_to_its_defaults_with_a_warning(monkeypatch, caplog):
    monkeypatch.setattr(xla_options, "CPU_OPTIONS", {"xla_cpu_experimental_ynn_fusion_type": "NO_SUCH_FUSION_TYPE"})
    xla_options.compiler_options.cache_clear()
    try:
        with caplog.at_level(logging.WARNING):
            assert xla_options.compiler_options() == {}
        assert "NO_SUCH_FUSION_TYPE" in caplog.text
    finally:
        xla_options.compiler_options.cache_clear()


def test_the_train_state_compiled_to_run_once_equals_the_optimised_one():
    """train.py builds the first state with little optimisation (a third of the compile time)."""
    assert xla_options.run_once_options() == xla_options.RUN_ONCE_OPTIONS
    cfg = ts.StepConfig(spec=ModelSpec(ngf=2, ndf=2, n_blocks=1), ins_max=2, ins_per=2, pool_size=2)
    init = lambda: ts.create_state(cfg, jax.random.PRNGKey(0), 32, 32)
    optimised = jax.jit(init, compiler_options={"xla_backend_optimization_level": 3})()  # XLA's default level
    once = jax.jit(init, compiler_options=xla_options.run_once_options())()
    chex.assert_trees_all_equal_shapes_and_dtypes(once, optimised)
    chex.assert_trees_all_close(once, optimised, rtol=1e-6, atol=1e-7)
