"""instagan-jax: InstaGAN (Mo, Cho, Shin, ICLR 2019) in JAX/Flax."""

__version__ = "0.1.0"
