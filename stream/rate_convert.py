"""A live path at any host rate: the model's rate inside, a whole-sample latency outside.

The host's audio goes to the model's rate on the worker and the target comes back
(``kernels.rate_convert``). Both resamplers work on one fine time grid, ticks of
1 / lcm(host, model) s. The path's delay in ticks is the way in's filter, the engine's
latency and the way back's filter; the way back is lengthened by under one host sample so
that the sum is a whole number of host samples. An impulse then comes out exactly that
many host samples later, and the reported latency is exact at every rate.

How much output the worker can have ready for the callback depends on how host samples,
model samples and hops line up. ``output_after`` counts it, and ``worst_slack`` and
``buffer_delay`` plan the output ring's prefill from it as ``stream.live`` does for one rate.
"""
from __future__ import annotations

from math import gcd, lcm

import numpy as np

from samstream.kernels.rate_convert import make_conversion_state
from samstream.kernels.resample import make_resampler_state

from .engine import ConfigurationError


class RateConversion:
    """Host rate <-> model rate around an engine with ``hop`` and ``engine_latency`` (model samples)."""

    def __init__(self, host_rate: int, model_rate: int, channels: int, hop: int, engine_latency: int, chunk: int):
        common = gcd(host_rate, model_rate)
        self.host_rate, self.model_rate, self.hop = host_rate, model_rate, hop
        self.ticks_per_host, self.ticks_per_model = model_rate // common, host_rate // common
        try:
            way_in = make_resampler_state(host_rate, model_rate, 1)
            shortest_way_back = make_resampler_state(model_rate, host_rate, 1)
        except ValueError as error:
            raise ConfigurationError(f"the host runs at {host_rate} Hz and the model at {model_rate} Hz, and "
                                     f"samstream cannot convert between them: {error}") from None
        ticks = way_in.delay_ticks + engine_latency * self.ticks_per_model + shortest_way_back.delay_ticks
        extra = -ticks % self.ticks_per_host
        self.delay = (ticks + extra) // self.ticks_per_host  # host samples, input to mixed output
        self.state = make_conversion_state(host_rate, model_rate, channels, hop, chunk, extra, self.delay)
        self.host_hop = self.state.host_target.shape[1]  # the most host samples one hop gives
        # The counts repeat once the host has sent a whole number of hops' worth of samples.
        self._pattern = (host_rate // common) * hop // gcd(hop, model_rate // common)

    def output_after(self, host_samples: np.ndarray) -> np.ndarray:
        """Host samples of output the worker has made once the callback pushed ``host_samples``."""
        model = -(-host_samples * self.ticks_per_host // self.ticks_per_model)
        hops = model // self.hop
        return -(-hops * self.hop * self.ticks_per_model // self.ticks_per_host)

    def _outputs_per_callback(self, block: int) -> tuple[int, np.ndarray]:
        period = lcm(block, self._pattern) // block
        return period, self.output_after(np.arange(1, 3 * period + 1, dtype=np.int64) * block)

    def worst_slack(self, prefill: int, block: int) -> int:
        """Fewest host periods the worker gets for a hop with ``prefill`` samples primed (``live.worst_slack``)."""
        period, made = self._outputs_per_callback(block)
        callbacks = np.arange(period, 2 * period)
        needed = (callbacks + 1) * block - prefill
        # made[c] is the output once callback c pushed its block: the first one with enough.
        completing = np.searchsorted(made, needed)
        return int((callbacks - completing).min())

    def buffer_delay(self, block: int | None) -> int:
        """The least prefill with which a callback never waits on a later one (any block sizes: None)."""
        period, made = self._outputs_per_callback(block or 1)
        pushed = np.arange(1, 3 * period + 1, dtype=np.int64) * (block or 1)
        return int((pushed - made).max())
