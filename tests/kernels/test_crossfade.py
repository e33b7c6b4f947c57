import numpy as np
import pytest

from samstream.kernels.crossfade import (
    crossfade,
    crossfade_remaining,
    make_crossfade_state,
    start_crossfade,
    swap_crossfade,
)

RATE = 48000
N_FADE = 960  # 20 ms at 48 kHz, the engine's default


def sines(n, dtype=np.float64):
    t = np.arange(n) / RATE
    a = np.stack([np.sin(2 * np.pi * 440 * t + 0.2), 0.5 * np.sin(2 * np.pi * 97 * t)])
    b = np.stack([0.8 * np.sin(2 * np.pi * 1013 * t + 1.1), np.sin(2 * np.pi * 3001 * t)])
    return a.astype(dtype), b.astype(dtype)


def run(state, a, b, events, block_sizes):
    """Crossfade a -> b in the given blocks; events maps sample index -> callable(state)."""
    out = np.empty_like(a)
    start = 0
    for size in block_sizes:
        if start in events:
            events[start](state)
        crossfade(a[:, start:start + size], b[:, start:start + size], out[:, start:start + size], state)
        start += size
    assert start == a.shape[1]
    return out


def partition(rng, n, cuts, max_block):
    """Random block sizes summing to n that have a boundary at every cut."""
    edges = {0, n, *cuts}
    pos = 0
    while pos < n:
        pos += int(rng.integers(0, max_block + 1))
        edges.add(min(pos, n))
    edges = sorted(edges)
    sizes = list(np.diff(edges))
    # Zero-length blocks are legal and must not disturb anything.
    sizes.insert(int(rng.integers(0, len(sizes))), 0)
    return [int(s) for s in sizes]


def max_step(x):
    return np.abs(np.diff(x, axis=1)).max()


def step_bound(a, b, n_fade):
    """Largest sample step an equal-power mix of a and b can take on this fade grid.

    out = a cos + b sin, so a step is at most sqrt(2) * (the inputs' own largest step)
    plus (|a| + |b|) * (the angle step): the mix cannot jump by more than that.
    """
    angle_step = 0.5 * np.pi / (n_fade + 1)
    own = max(max_step(a), max_step(b))
    return np.sqrt(2) * own + (np.abs(a).max() + np.abs(b).max()) * angle_step


def weights(state, n):
    """The (cos, sin) weights the kernel applies over the next n samples."""
    ones, zeros = np.ones((1, n)), np.zeros((1, n))
    saved = state.position.copy()
    w_from, w_to = np.empty((1, n)), np.empty((1, n))
    crossfade(ones, zeros, w_from, state)
    state.position[:] = saved
    crossfade(zeros, ones, w_to, state)
    return w_from[0], w_to[0]


def test_equal_power_at_every_sample():
    state = make_crossfade_state(N_FADE)
    start_crossfade(state)
    c, s = weights(state, N_FADE + 10)
    np.testing.assert_allclose(c ** 2 + s ** 2, 1.0, rtol=0, atol=1e-14)
    assert np.all(np.diff(c[: N_FADE + 1]) < 0) and np.all(np.diff(s[: N_FADE + 1]) > 0)
    # The fade takes exactly N_FADE mixed samples, then is exactly `to`.
    assert np.all((c[:N_FADE] > 0) & (s[:N_FADE] > 0))
    assert np.all(c[N_FADE:] == 0) and np.all(s[N_FADE:] == 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exact_inputs_outside_the_fade(dtype):
    a, b = sines(4000, dtype)
    state = make_crossfade_state(N_FADE)
    out = run(state, a, b, {1000: start_crossfade}, [1000, 3000])
    assert out.dtype == dtype
    np.testing.assert_array_equal(out[:, :1000], a[:, :1000])
    np.testing.assert_array_equal(out[:, 1000 + N_FADE:], b[:, 1000 + N_FADE:])
    assert crossfade_remaining(state) == 0
    # Resting on `to` from the start copies `to` exactly as well.
    rest = make_crossfade_state(N_FADE, at_to=True)
    np.testing.assert_array_equal(run(rest, a, b, {}, [4000]), b)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_independent_of_block_partition(seed, dtype):
    rng = np.random.default_rng(seed)
    a, b = sines(5000, dtype)
    # A start, a reversal mid-fade, a restart mid-way back, and a swap of inputs.
    events = {300: start_crossfade, 800: lambda s: start_crossfade(s, 0),
              1100: start_crossfade, 3500: lambda s: start_crossfade(s, 0)}
    whole = run(make_crossfade_state(N_FADE), a, b, events, partition(rng, 5000, events, 5000))
    for _ in range(3):
        sizes = partition(rng, 5000, events, 400)
        np.testing.assert_array_equal(run(make_crossfade_state(N_FADE), a, b, events, sizes), whole)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_no_step_larger_than_the_inputs_allow(dtype):
    a, b = sines(3000, dtype)
    out = run(make_crossfade_state(N_FADE), a, b, {500: start_crossfade}, [500, 2500])
    region = slice(490, 500 + N_FADE + 10)
    for ch in range(2):
        ch_a, ch_b = a[ch:ch + 1], b[ch:ch + 1]
        assert max_step(out[ch:ch + 1, region]) <= step_bound(ch_a, ch_b, N_FADE) + 1e-6

    # Constants of opposite sign: the mix moves only by the angle step.
    ones = np.ones((1, 3000), dtype)
    out = run(make_crossfade_state(N_FADE), ones, -ones, {500: start_crossfade}, [500, 2500])
    assert max_step(out) <= 2 * 0.5 * np.pi / (N_FADE + 1) + 1e-6


@pytest.mark.parametrize("reverse_at", [1, 200, 480, 959])
def test_restart_mid_fade_is_continuous(reverse_at):
    a, b = sines(4000)
    state = make_crossfade_state(N_FADE)
    events = {1000: start_crossfade, 1000 + reverse_at: lambda s: start_crossfade(s, 0)}
    out = run(state, a, b, events, [1000, reverse_at, 3000 - reverse_at])
    assert max_step(out) <= step_bound(a, b, N_FADE) + 1e-12
    # A reversal retraces the curve: it is back on exactly `from` after as many samples.
    back = 1000 + 2 * reverse_at - 1
    np.testing.assert_array_equal(out[:, back:], a[:, back:])

    # Starting again towards the same target mid-fade changes nothing.
    events = {1000: start_crossfade, 1000 + reverse_at: start_crossfade}
    again = run(make_crossfade_state(N_FADE), a, b, events, [1000, reverse_at, 3000 - reverse_at])
    plain = run(make_crossfade_state(N_FADE), a, b, {1000: start_crossfade}, [1000, 3000])
    np.testing.assert_array_equal(again, plain)


def test_swap_keeps_output_and_chains_fades():
    a, b = sines(4000)
    c = np.flip(a, axis=0).copy()
    state = make_crossfade_state(N_FADE)
    out = np.empty_like(a)
    start_crossfade(state)
    crossfade(a[:, :400], b[:, :400], out[:, :400], state)
    reference = make_crossfade_state(N_FADE)
    reference.position[:] = state.position
    # Mid-fade swap: same output with the inputs exchanged.
    swap_crossfade(state)
    crossfade(b[:, 400:800], a[:, 400:800], out[:, 400:800], state)
    expected = np.empty((2, 400))
    crossfade(a[:, 400:800], b[:, 400:800], expected, reference)
    np.testing.assert_array_equal(out[:, 400:800], expected)
    # It finishes on `b`, now the `from` input, so a plain start fades on to c.
    crossfade(b[:, 800:2000], a[:, 800:2000], out[:, 800:2000], state)
    np.testing.assert_array_equal(out[:, 1400:2000], b[:, 1400:2000])
    start_crossfade(state)
    assert crossfade_remaining(state) == N_FADE
    crossfade(b[:, 2000:], c[:, 2000:], out[:, 2000:], state)
    assert max_step(out[:, 1990:2000 + N_FADE + 10]) <= step_bound(b, c, N_FADE) + 1e-12
    np.testing.assert_array_equal(out[:, 2000 + N_FADE:], c[:, 2000 + N_FADE:])


def test_remaining_counts_down():
    state = make_crossfade_state(10)
    assert crossfade_remaining(state) == 0
    start_crossfade(state)
    assert crossfade_remaining(state) == 10
    buf = np.zeros((1, 4))
    crossfade(buf, buf, buf, state)
    assert crossfade_remaining(state) == 6
    start_crossfade(state, 0)
    assert crossfade_remaining(state) == 3


@pytest.mark.parametrize("kwargs", [{"n_fade": 0}, {"n_fade": -5}, {"n_fade": 9.5}, {"n_fade": True},
                                    {"n_fade": 10, "at_to": "yes"}, {"n_fade": 10, "at_to": None}])
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        make_crossfade_state(**kwargs)


def test_kernel_rejects_mismatched_blocks():
    state = make_crossfade_state(8)
    with pytest.raises(ValueError):
        crossfade(np.zeros((1, 8)), np.zeros((1, 7)), np.zeros((1, 8)), state)
    with pytest.raises(ValueError):
        crossfade(np.zeros((1, 8)), np.zeros((1, 8)), np.zeros((2, 8)), state)
