"""Tests of lossutils.optim: hand-computed steps, loop references, purity, state, validation."""

import itertools
import math
import re

import numpy as np
import pytest

from lossutils import SGD, AdaGrad, Adam, AMSGrad, Momentum, Nesterov, RMSProp, step_decay

ALL = [
    lambda: SGD(lr=0.1),
    lambda: Momentum(lr=0.1),
    lambda: Nesterov(lr=0.1),
    lambda: AdaGrad(lr=0.1),
    lambda: RMSProp(lr=0.1),
    lambda: Adam(lr=0.1),
    lambda: AMSGrad(lr=0.1),
    lambda: AMSGrad(lr=0.1, bias_correction=False),
]
IDS = ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "amsgrad", "amsgrad-paper"]


def run(opt, w, grads):
    """Parameters after each step, feeding the given gradient sequence."""
    out = []
    for g in grads:
        w = opt.step(w, g)
        out.append(w)
    return out


# --- FAU's reference numbers and hand-computed sequences ---------------------------------


def test_sgd_fau():
    assert SGD(lr=1.0).step(1.0, 1.0) == 0.0


def test_momentum_fau():
    # v = 0.9 * 0 - 1 * 1 = -1, w = 1 - 1 = 0; then v = 0.9 * (-1) - 1 = -1.9, w = -1.9.
    assert run(Momentum(lr=1.0, momentum=0.9), 1.0, [1.0, 1.0]) == [0.0, -1.9]


def test_adam_fau():
    # t = 1, g = 1: m = 0.99, r = 0.98; m_hat = 0.99 / (1 - 0.01) = 1, r_hat = 0.98 / 0.98 = 1,
    #   w = 1 - 1 * 1 / (1 + 1e-8) = 1e-8 / (1 + 1e-8), i.e. 0 up to eps.
    # t = 2, g = 0.5: m = 0.01 * 0.99 + 0.99 * 0.5 = 0.5049,
    #   r = 0.02 * 0.98 + 0.98 * 0.25 = 0.2646,
    #   m_hat = 0.5049 / (1 - 0.01**2) = 0.5049 / 0.9999,
    #   r_hat = 0.2646 / (1 - 0.02**2) = 0.2646 / 0.9996,
    #   w = w1 - m_hat / (sqrt(r_hat) + 1e-8) = -0.98144731956...
    opt = Adam(lr=1.0, mu=0.01, rho=0.02, eps=1e-8)
    w1 = opt.step(1.0, 1.0)
    assert w1 == pytest.approx(0.0, abs=1e-8)
    w2 = opt.step(w1, 0.5)
    by_hand = 1e-8 / (1 + 1e-8) - (0.5049 / 0.9999) / (math.sqrt(0.2646 / 0.9996) + 1e-8)
    assert w2 == pytest.approx(by_hand, rel=1e-14)
    assert w2 == pytest.approx(-0.9814473195614205, rel=1e-14)  # FAU's published value


def test_adagrad_by_hand():
    # r = 9, w = 1 - 3 / 3 = 0; r = 25, w = 0 - 4 / 5; g = 0 leaves w; r = 25 + 144 = 169.
    steps = run(AdaGrad(lr=1.0, eps=0.0), 1.0, [3.0, 4.0, 0.0, -12.0])
    np.testing.assert_allclose(steps, [0.0, -0.8, -0.8, -0.8 + 12 / 13], rtol=1e-15)


def test_adagrad_eps_outside_the_root():
    # sqrt(9) + 1 = 4, not sqrt(9 + 1).
    assert AdaGrad(lr=1.0, eps=1.0).step(0.0, 3.0) == -0.75


def test_rmsprop_by_hand():
    # r = 0.25 * 4 = 1; r = 0.75 * 1 + 0.25 * 4 = 1.75; r = 0.75 * 1.75 + 0.25 * 1 = 1.5625.
    steps = run(RMSProp(lr=1.0, rho=0.75, eps=0.0), 1.0, [2.0, 2.0, -1.0])
    w1 = 1 - 2 / 1
    w2 = w1 - 2 / math.sqrt(1.75)
    w3 = w2 + 1 / 1.25
    np.testing.assert_allclose(steps, [w1, w2, w3], rtol=1e-15)


def test_rmsprop_first_step_is_not_bias_corrected():
    # r_1 = (1 - rho) g^2: the first step is lr / sqrt(1 - rho), whatever g.
    assert RMSProp(lr=1.0, rho=0.96, eps=0.0).step(0.0, -7.0) == pytest.approx(5.0)


def test_nesterov_by_hand():
    # v = -1, w = 1 + 0.5 * (-1) - 1 = -0.5; v = 0.5 * (-1) - 1 = -1.5, w = -0.5 - 0.75 - 1.
    assert run(Nesterov(lr=1.0, momentum=0.5), 1.0, [1.0, 1.0]) == [-0.5, -2.25]


def test_nesterov_tracks_the_lecture_look_ahead_form():
    # Lecture form on f(theta) = a/2 theta^2 (gradient at the look-ahead point), written out;
    # the optimizer's parameters are that sequence's look-ahead points theta + mu v.
    a, lr, mu = np.array([1.0, 3.0, 0.2]), 0.1, 0.9
    theta, v = np.array([1.0, -2.0, 4.0]), np.zeros(3)
    opt = Nesterov(lr=lr, momentum=mu)
    w = theta.copy()
    for _ in range(50):
        v = mu * v - lr * a * (theta + mu * v)
        theta = theta + v
        w = opt.step(w, a * w)
        np.testing.assert_allclose(w, theta + mu * v, rtol=1e-12, atol=1e-15)


def test_momentum_equals_torch_buffer_form_for_constant_lr():
    # torch.optim.SGD(momentum=mu, dampening=0): b = mu b + g, w -= lr b.
    rng = np.random.default_rng(0)
    grads = rng.normal(size=(30, 4))
    lr, mu = 0.05, 0.95
    w_ref, b = np.ones(4), np.zeros(4)
    ours = run(Momentum(lr=lr, momentum=mu), np.ones(4), grads)
    for g, w in zip(grads, ours, strict=True):
        b = mu * b + g
        w_ref = w_ref - lr * b
        np.testing.assert_allclose(w, w_ref, rtol=1e-12)


# --- loop references for Adam and AMSGrad ------------------------------------------------


def adam_reference(w, grads, lr, mu, rho, eps, amsgrad=None):
    """Kingma & Ba Algorithm 1, one coordinate at a time; amsgrad in {None, "hat", "paper",
    "torch"} selects where the running maximum of the second moment is taken."""
    w = [float(x) for x in w]
    n = len(w)
    m, r, r_max = [0.0] * n, [0.0] * n, [0.0] * n
    out = []
    for t, g in enumerate(grads, start=1):
        for i in range(n):
            m[i] = mu * m[i] + (1 - mu) * g[i]
            r[i] = rho * r[i] + (1 - rho) * g[i] ** 2
            m_hat, r_hat = m[i] / (1 - mu**t), r[i] / (1 - rho**t)
            if amsgrad is None:
                denom = math.sqrt(r_hat)
            elif amsgrad == "hat":
                r_max[i] = max(r_max[i], r_hat)
                denom = math.sqrt(r_max[i])
            elif amsgrad == "paper":
                m_hat, r_max[i] = m[i], max(r_max[i], r[i])
                denom = math.sqrt(r_max[i])
            else:
                r_max[i] = max(r_max[i], r[i])
                denom = math.sqrt(r_max[i] / (1 - rho**t))
            w[i] -= lr * m_hat / (denom + eps)
        out.append(list(w))
    return np.array(out)


@pytest.mark.parametrize(
    ("make", "variant"),
    [
        (lambda: Adam(lr=0.01, mu=0.8, rho=0.9, eps=1e-3), None),
        (lambda: AMSGrad(lr=0.01, mu=0.8, rho=0.9, eps=1e-3), "hat"),
        (lambda: AMSGrad(lr=0.01, mu=0.8, rho=0.9, eps=1e-3, bias_correction=False), "paper"),
    ],
    ids=["adam", "amsgrad", "amsgrad-paper"],
)
def test_adam_family_matches_loop_reference(make, variant):
    rng = np.random.default_rng(1)
    # Gradients that flip sign and change scale: a max over the momentum instead of the
    # second moment, or a missing maximum, gives other numbers.
    grads = rng.normal(size=(40, 3)) * np.array([1.0, 10.0, 0.1]) * np.where(
        np.arange(40) % 2, -1, 1
    )[:, None]
    grads[20:] *= 0.01  # the second moment falls, so the maximum matters
    w0 = np.array([0.5, -1.0, 2.0])
    expected = adam_reference(w0, grads, 0.01, 0.8, 0.9, 1e-3, amsgrad=variant)
    np.testing.assert_allclose(run(make(), w0, grads), expected, rtol=1e-12)


def test_amsgrad_differs_from_adam_and_torch_when_the_second_moment_falls():
    grads = np.array([[1.0]] + [[0.01]] * 20)
    ours = run(AMSGrad(lr=0.01, mu=0.5, rho=0.9, eps=0.0), np.zeros(1), grads)
    adam = adam_reference([0.0], grads, 0.01, 0.5, 0.9, 0.0)
    torch_style = adam_reference([0.0], grads, 0.01, 0.5, 0.9, 0.0, amsgrad="torch")
    assert not np.allclose(ours, adam)
    assert not np.allclose(ours, torch_style)


def test_amsgrad_equals_adam_for_a_constant_gradient():
    # r_hat = g^2 at every step, so the maximum never differs from the current value.
    grads = [np.array([0.3, -2.0])] * 25
    np.testing.assert_allclose(
        run(AMSGrad(lr=0.1), np.zeros(2), grads), run(Adam(lr=0.1), np.zeros(2), grads),
        rtol=1e-12,
    )


def test_amsgrad_effective_step_never_grows_unlike_torch():
    # One large gradient, then zeros: r_t = rho^(t-1) (1 - rho). Our maximum of r_hat stays
    # at r_hat_1 = 1; torch's sqrt(max(r) / (1 - rho^t)) shrinks, so its steps would grow.
    rho = 0.9
    opt = AMSGrad(lr=1.0, rho=rho)
    w = np.zeros(1)
    denominators = []
    for t, g in enumerate([1.0] + [0.0] * 10, start=1):
        w = opt.step(w, [g])
        assert opt.state["r_max"][0] == pytest.approx(1.0, rel=1e-12)
        denominators.append(math.sqrt((1 - rho) / (1 - rho**t)))  # torch's, by hand
    assert all(b < a for a, b in itertools.pairwise(denominators))


def reddi_online_problem(opt, steps=3000, c=3.0, alpha=0.5):
    """Reddi, Kale & Kumar (2018), Sec. 3: f_t(x) = c x if t mod 3 == 1 else -x on [-1, 1].

    The regret-minimising point is x = -1 (each period of 3 steps adds (c - 2) x). Step size
    alpha / sqrt(t) as in the paper; projection onto [-1, 1] by clipping.
    """
    x = np.array([0.0])
    for t in range(1, steps + 1):
        opt.lr = alpha / math.sqrt(t)
        g = c if t % 3 == 1 else -1.0
        x = np.clip(opt.step(x, np.array([g])), -1.0, 1.0)
    return float(x[0])


def test_reddi_counterexample_adam_fails_amsgrad_converges():
    c = 3.0
    rho = 1 / (1 + c**2)  # the paper's beta2, with beta1 = 0
    assert reddi_online_problem(Adam(lr=1.0, mu=0.0, rho=rho), c=c) > 0.9
    assert reddi_online_problem(AMSGrad(lr=1.0, mu=0.0, rho=rho), c=c) < -0.9
    paper = AMSGrad(lr=1.0, mu=0.0, rho=rho, eps=0.0, bias_correction=False)
    assert reddi_online_problem(paper, c=c) < -0.9


# --- purity, state, dtypes ----------------------------------------------------------------


@pytest.mark.parametrize("make", ALL, ids=IDS)
def test_step_is_pure_and_returns_new_arrays(make):
    opt = make()
    params, grads = np.array([1.0, -2.0, 0.5]), np.array([0.3, 0.1, -0.2])
    p0, g0 = params.copy(), grads.copy()
    new = opt.step(params, grads)
    np.testing.assert_array_equal(params, p0)
    np.testing.assert_array_equal(grads, g0)
    assert isinstance(new, np.ndarray)
    assert not np.shares_memory(new, params)
    assert not np.shares_memory(new, grads)
    state = opt.state
    new[:] = 99.0  # the caller owns the result: writing to it must not reach the state
    grads[:] = 99.0
    for name, value in opt.state.items():
        np.testing.assert_array_equal(value, state[name])


@pytest.mark.parametrize("make", ALL, ids=IDS)
def test_state_created_on_first_step(make):
    opt = make()
    before = opt.state
    assert before["t"] == 0
    assert all(v is None for k, v in before.items() if k != "t")
    opt.step(np.zeros((2, 3), dtype=np.float32), np.ones((2, 3)))
    after = opt.state
    assert after["t"] == 1
    for name, value in after.items():
        if name != "t":
            assert value.shape == (2, 3)
            assert value.dtype == np.float32
    after["t"] = 7  # a copy
    assert opt.state["t"] == 1


def test_state_names_match_the_exercise_contract():
    assert set(Momentum(lr=1.0).state) == {"t", "v"}
    assert set(Adam().state) == {"t", "m", "r"}
    assert set(AMSGrad().state) == {"t", "m", "r", "r_max"}


@pytest.mark.parametrize("make", ALL, ids=IDS)
def test_same_steps_from_the_same_state(make):
    rng = np.random.default_rng(2)
    grads = rng.normal(size=(10, 3))
    a, b = make(), make()
    np.testing.assert_array_equal(run(a, np.ones(3), grads), run(b, np.ones(3), grads))
    a.reset()
    assert a.state["t"] == 0
    np.testing.assert_array_equal(run(a, np.ones(3), grads), run(make(), np.ones(3), grads))


@pytest.mark.parametrize("make", ALL, ids=IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_of_params_preserved(make, dtype):
    opt = make()
    w = np.array([1.0, -1.0], dtype=dtype)
    for _ in range(3):
        w = opt.step(w, np.array([0.5, 0.25]))  # float64 grads are cast to the params' dtype
        assert w.dtype == dtype


@pytest.mark.parametrize("make", ALL, ids=IDS)
def test_float32_close_to_float64(make):
    rng = np.random.default_rng(3)
    grads = rng.normal(size=(20, 4))
    w64 = run(make(), np.ones(4), grads)[-1]
    w32 = run(make(), np.ones(4, dtype=np.float32), grads.astype(np.float32))[-1]
    np.testing.assert_allclose(w32, w64, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("make", ALL, ids=IDS)
def test_lists_and_scalars_accepted(make):
    out = make().step([1, 2], [0.5, -0.5])
    assert out.dtype == np.float64
    assert out.shape == (2,)
    scalar = make().step(1.0, 1.0)
    assert isinstance(scalar, np.ndarray)
    assert scalar.shape == ()


@pytest.mark.parametrize("make", ALL, ids=IDS)
def test_shape_errors(make):
    opt = make()
    with pytest.raises(
        ValueError, match=re.escape("params has shape (2,) but grads has shape (3,);")
    ):
        opt.step(np.zeros(2), np.zeros(3))
    opt.step(np.zeros(2), np.ones(2))
    msg = (
        "params has shape (3,) and dtype float64, but this optimizer's state was created for "
        "shape (2,) and dtype float64 on its first step; use one optimizer per parameter "
        "array, or call reset() to start over."
    )
    with pytest.raises(ValueError, match=re.escape(msg)):
        opt.step(np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match=re.escape("params has shape (2,) and dtype float32")):
        opt.step(np.zeros(2, dtype=np.float32), np.ones(2))
    opt.reset()
    assert opt.step(np.zeros(3), np.ones(3)).shape == (3,)


# --- hyperparameters ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: SGD(lr=0), "lr must be a finite number > 0, got 0."),
        (lambda: SGD(lr=-0.1), "lr must be a finite number > 0, got -0.1."),
        (lambda: SGD(lr=math.inf), "lr must be a finite number > 0, got inf."),
        (lambda: SGD(lr="0.1"), "lr must be a finite number > 0, got '0.1'."),
        (lambda: Adam(lr=math.nan), "lr must be a finite number > 0, got nan."),
        (lambda: Momentum(lr=1, momentum=1.0), "momentum must be a number in [0, 1), got 1.0."),
        (lambda: Nesterov(lr=1, momentum=-0.1), "momentum must be a number in [0, 1), got -0.1."),
        (lambda: RMSProp(rho=1), "rho must be a number in [0, 1), got 1."),
        (lambda: Adam(mu=True), "mu must be a number in [0, 1), got True."),
        (lambda: AMSGrad(rho=1.5), "rho must be a number in [0, 1), got 1.5."),
        (lambda: AdaGrad(eps=-1e-8), "eps must be a finite number >= 0, got -1e-08."),
        (
            lambda: AMSGrad(bias_correction=1),
            "bias_correction must be True or False, got 1.",
        ),
    ],
)
def test_bad_hyperparameters(make, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        make()


def test_lr_can_be_reassigned_and_is_validated():
    opt = SGD(lr=1.0)
    opt.lr = 0.5
    assert opt.step(1.0, 1.0) == 0.5
    with pytest.raises(ValueError, match=re.escape("lr must be a finite number > 0, got -1.")):
        opt.lr = -1
    assert opt.lr == 0.5
    adam = Adam()
    with pytest.raises(ValueError, match=re.escape("rho must be a number in [0, 1), got 2.")):
        adam.rho = 2
    adam.lr = np.float64(0.01)
    assert type(adam.lr) is float  # numpy scalars would promote float32 params


def test_repr():
    assert repr(Momentum(lr=0.1)) == "Momentum(lr=0.1, momentum=0.9)"
    assert repr(AdaGrad()) == "AdaGrad(lr=0.01, eps=1e-08)"
    assert repr(AMSGrad(bias_correction=False)) == (
        "AMSGrad(lr=0.001, mu=0.9, rho=0.999, eps=1e-08, bias_correction=False)"
    )


def test_defaults_follow_the_lecture():
    assert (RMSProp().lr, RMSProp().rho) == (0.001, 0.9)
    adam = Adam()
    assert (adam.lr, adam.mu, adam.rho, adam.eps) == (0.001, 0.9, 0.999, 1e-8)
    assert Momentum(lr=0.1).momentum == 0.9


# --- step decay ---------------------------------------------------------------------------


def test_step_decay():
    lrs = [step_decay(0.01, epoch, every=3) for epoch in range(7)]
    np.testing.assert_allclose(lrs, [0.01] * 3 + [0.001] * 3 + [0.0001], rtol=1e-12)
    assert step_decay(1.0, 5, every=2, factor=0.5) == 0.25
    assert step_decay(1.0, 100, every=1, factor=1.0) == 1.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lr0": 0.0, "epoch": 0, "every": 1}, "lr0 must be a finite number > 0, got 0.0."),
        ({"lr0": 1.0, "epoch": -1, "every": 1}, "epoch must be an integer >= 0, got -1."),
        ({"lr0": 1.0, "epoch": 1.5, "every": 1}, "epoch must be an integer >= 0, got 1.5."),
        ({"lr0": 1.0, "epoch": 0, "every": 0}, "every must be an integer >= 1, got 0."),
        (
            {"lr0": 1.0, "epoch": 0, "every": 1, "factor": 0.0},
            "factor must be a number in (0, 1], got 0.0.",
        ),
        (
            {"lr0": 1.0, "epoch": 0, "every": 1, "factor": 2},
            "factor must be a number in (0, 1], got 2.",
        ),
    ],
)
def test_step_decay_errors(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        step_decay(**kwargs)
