"""Equal-power crossfade that runs across block boundaries.

The output is always ``from * cos(theta) + to * sin(theta)``, with ``theta``
on a grid of ``n_fade + 2`` points from 0 to pi/2: position 0 is exactly
``from``, position ``n_fade + 1`` exactly ``to``, and a fade passes through the
``n_fade`` points between, one per sample, so it lasts ``n_fade`` samples and
each end is one grid step from its neighbour (no jump on entry or exit).
Between fades the position rests at one end and the kernel copies that input
bit for bit.

Restart rule: ``start_crossfade(state, target)`` only sets the direction
(towards ``to`` for target 1, towards ``from`` for target 0); the position on
the curve is kept. So a fade started, or reversed, mid-fade continues from the
current mix, moving one grid step per sample: a reversal retraces the curve
and takes as many samples as were faded so far, and a repeated start towards
the same target changes nothing. The mix never jumps.

To fade to a third signal, let the running fade finish (or reverse it), then
either put the new signal in the silent input, or call ``swap_crossfade``
and swap the two inputs: the output is bit-for-bit the same, and
``start_crossfade(state)`` then fades from the old ``to`` to the new one.
"""

from math import cos, pi
from typing import NamedTuple

import numpy as np
from numba import njit


class CrossfadeState(NamedTuple):
    cos_curve: np.ndarray  # (n_fade + 2,) float64: weight of ``from`` at each position
    # (n_fade + 2,) float64: weight of ``to``; sin_curve[p] is bit-for-bit
    # cos_curve[n_fade + 1 - p], which makes swap_crossfade exact
    sin_curve: np.ndarray
    position: np.ndarray  # int64[2]: [position 0..n_fade + 1, direction +1 or -1]
    n_fade: int


def make_crossfade_state(n_fade, at_to=False):
    """A crossfade of ``n_fade`` samples, resting on ``from`` (or on ``to`` if ``at_to``)."""
    if isinstance(n_fade, bool) or not isinstance(n_fade, (int, np.integer)) or n_fade < 1:
        raise ValueError(f"n_fade must be a positive integer number of samples, got {n_fade!r}.")
    if at_to not in (True, False):
        raise ValueError(f"at_to must be True or False, got {at_to!r}.")
    n_fade = int(n_fade)
    end = n_fade + 1
    cos_curve = np.array([cos(0.5 * pi * p / end) for p in range(end + 1)])
    # cos(pi/2) is 6e-17, not 0: pin the ends so resting states copy exactly.
    cos_curve[0], cos_curve[end] = 1.0, 0.0
    return CrossfadeState(
        cos_curve=cos_curve,
        sin_curve=cos_curve[::-1].copy(),
        position=np.array([end, 1] if at_to else [0, -1], dtype=np.int64),
        n_fade=n_fade,
    )


@njit(cache=True)
def start_crossfade(state, target=1):
    """Head towards ``to`` (target 1) or back towards ``from`` (target 0) from where the mix is."""
    state.position[1] = 1 if target else -1


@njit(cache=True)
def swap_crossfade(state):
    """Mirror the state so that swapped inputs give the same output as before."""
    state.position[0] = state.n_fade + 1 - state.position[0]
    state.position[1] = -state.position[1]


@njit(cache=True)
def crossfade_remaining(state):
    """Samples still to be mixed before the output is exactly the current target."""
    p = state.position[0]
    if state.position[1] > 0:
        return max(state.n_fade - p, 0)
    return max(p - 1, 0)


@njit(cache=True)
def crossfade(from_block, to_block, out_block, state):
    """Write the crossfade of two (channels, n) blocks into ``out_block``."""
    if from_block.shape != to_block.shape or from_block.shape != out_block.shape:
        raise ValueError("crossfade: from_block, to_block and out_block must have one shape")
    cos_curve = state.cos_curve
    sin_curve = state.sin_curve
    end = state.n_fade + 1
    start = state.position[0]
    step = state.position[1]
    n_ch, n = from_block.shape
    for c in range(n_ch):
        p = start
        for i in range(n):
            # Step first, then mix: the first sample after a start is already
            # one grid point into the fade, the last one lands on the end.
            p = min(max(p + step, 0), end)
            if p == end:
                out_block[c, i] = to_block[c, i]
            elif p == 0:
                out_block[c, i] = from_block[c, i]
            else:
                out_block[c, i] = from_block[c, i] * cos_curve[p] + to_block[c, i] * sin_curve[p]
    state.position[0] = min(max(start + step * n, 0), end)
