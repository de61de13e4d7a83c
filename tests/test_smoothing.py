"""The One-Euro filter on synthetic tracks whose truth is known."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from streampose.smoothing import OneEuro

FPS = 30.0
K = 14


def pose(x: float, y: float, conf: float = 0.8) -> npt.NDArray[np.float32]:
    """K joints spread around (x, y), all at the same confidence."""
    kp = np.zeros((K, 3), np.float32)
    kp[:, 0] = x + 10.0 * np.arange(K)
    kp[:, 1] = y + 5.0 * np.arange(K)
    kp[:, 2] = conf
    return kp


def run(f: OneEuro, track: list[npt.NDArray[np.float32]]) -> npt.NDArray[np.float32]:
    return np.stack([f(kp, i / FPS) for i, kp in enumerate(track)])


def test_constant_signal_stays_constant() -> None:
    kp = pose(100.0, 200.0)
    out = run(OneEuro(), [kp] * 50)
    np.testing.assert_allclose(out, np.broadcast_to(kp, out.shape), atol=1e-4)


def test_jitter_of_a_still_person_is_removed() -> None:
    rng = np.random.default_rng(0)
    truth = pose(320.0, 240.0)
    noisy = [truth + np.concatenate([rng.normal(0, 3.0, (K, 2)), np.zeros((K, 1))], axis=1).astype(np.float32)
             for _ in range(300)]
    out = run(OneEuro(), noisy)
    raw_var = np.var(np.stack(noisy)[50:, :, :2] - truth[:, :2])
    out_var = np.var(out[50:, :, :2] - truth[:, :2])
    assert out_var < raw_var / 5, (raw_var, out_var)
    assert np.abs(out[50:, :, :2] - truth[:, :2]).mean() < 1.5  # no bias


def test_fast_motion_is_followed_with_little_lag() -> None:
    speed = 300.0  # px/s, a brisk arm movement in a 720p frame
    track = [pose(100.0 + speed * i / FPS, 200.0) for i in range(60)]
    lag = {beta: float(np.abs(run(OneEuro(beta=beta), track)[-1, :, 0] - track[-1][:, 0]).mean())
           for beta in (0.0, 0.01)}
    # beta = 0 is a plain 1 Hz low-pass: ~48 px behind; the default cutoff rises to 4 Hz at this speed
    assert lag[0.01] < 15.0
    assert lag[0.01] < lag[0.0] / 3, lag


def test_confidence_is_passed_through() -> None:
    rng = np.random.default_rng(1)
    f = OneEuro()
    for i in range(20):
        kp = pose(50.0 + i, 60.0)
        kp[:, 2] = rng.uniform(0, 1, K)
        out = f(kp, i / FPS)
        np.testing.assert_array_equal(out[:, 2], kp[:, 2])
        assert out.dtype == np.float32 and out.shape == (K, 3)


def test_unseen_joints_pass_through_and_restart() -> None:
    f = OneEuro()
    for i in range(10):
        f(pose(100.0, 100.0), i / FPS)
    jumped = pose(100.0, 100.0)
    jumped[0, :2] = (900.0, 900.0)  # the network's guess for an occluded joint: anywhere
    jumped[0, 2] = 0.02
    out = f(jumped, 10 / FPS)
    np.testing.assert_allclose(out[0, :2], (900.0, 900.0))
    np.testing.assert_allclose(out[1:], pose(100.0, 100.0)[1:], atol=1e-3)  # the others are untouched
    back = pose(100.0, 100.0)
    back[0, :2] = (300.0, 300.0)  # seen again elsewhere: it starts from there, not from the wild guess
    np.testing.assert_allclose(f(back, 11 / FPS)[0, :2], (300.0, 300.0))


def test_still_images_without_time() -> None:
    f = OneEuro()
    first = f(pose(10.0, 10.0), None)
    np.testing.assert_array_equal(first, pose(10.0, 10.0))  # the first frame is returned as is
    out = f(pose(40.0, 10.0), None)  # taken 1/30 s later
    assert 10.0 < out[0, 0] < 40.0


@pytest.mark.parametrize("times", [[0.0, 0.0, 0.0], [1.0, 2.0, 0.5, 0.6], [0.0, 0.0, 0.04]])
def test_time_that_does_not_advance_gives_no_nan(times: list[float]) -> None:
    f = OneEuro()
    assert all(np.isfinite(f(pose(100.0 + 7 * i, 50.0), t)).all() for i, t in enumerate(times))


def test_a_step_back_in_time_starts_over() -> None:
    f = OneEuro()
    for i in range(10):
        f(pose(100.0, 50.0), 1.0 + i / FPS)
    np.testing.assert_array_equal(f(pose(400.0, 50.0), 0.0), pose(400.0, 50.0))  # a loop or a seek


def test_reset_forgets_the_past() -> None:
    f = OneEuro()
    for i in range(10):
        f(pose(0.0, 0.0), i / FPS)
    f.reset()
    np.testing.assert_array_equal(f(pose(500.0, 500.0), 1.0), pose(500.0, 500.0))


def test_bad_parameters() -> None:
    with pytest.raises(ValueError, match="min_cutoff"):
        OneEuro(min_cutoff=0.0)
    with pytest.raises(ValueError, match="beta"):
        OneEuro(beta=-1.0)
