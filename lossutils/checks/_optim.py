"""Exercises of notebook 06-optimization: one optimizer step, carried over a gradient sequence.

``sgd_step`` is stateless and checked call by call. The other steps carry state (the velocity,
or Adam's dict), so a case is a start point, a fixed gradient sequence and hyperparameters:
the driver calls the student's function once per gradient, feeding back the weights and state
the function itself returned, and the judge compares every step with the ``lossutils``
optimizer run on the same sequence.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

import lossutils

from ._calling import Outcome, call_safely, exception_text, quiet
from ._common import DTYPES, case, n_random
from ._core import (
    GENERIC,
    Case,
    Exercise,
    FunctionExercise,
    Mistake,
    Verdict,
    close,
    compare,
    dtype_advice,
    float_value,
    register,
)
from ._plain import describe_returned, expected_got, fmt, is_numpy_scalar

NOTEBOOK = "06-optimization"

__all__ = ["StepExercise"]


# --------------------------------------------------------------------------- SGD


def _sgd(w, grad, lr):
    return lossutils.SGD(lr).step(w, grad)


def _sgd_cases(rng, hidden):
    cases = [
        case("FAU: Sgd(lr=1) from w = 1 with gradient 1", np.array([1.0]), np.array([1.0]), 1.0),
        case("hand-made, float32", np.array([0.5, -2.0], np.float32),
             np.array([1.0, -4.0], np.float32), 0.25),
        case("2-D weights", np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[0.5, 0.0], [-1.0, 2.0]]),
             0.1),
    ]
    for dtype in DTYPES:
        for _ in range(n_random(hidden)):
            shape = (int(rng.integers(1, 6)), int(rng.integers(1, 4)))
            lr = float(np.round(rng.uniform(0.01, 1.0), 3))
            cases.append(case(f"random {np.dtype(dtype).name}, shape {shape}, lr = {lr}",
                              rng.normal(size=shape).astype(dtype),
                              rng.normal(size=shape).astype(dtype), lr))
    return cases


register(
    FunctionExercise(
        "sgd_step",
        notebook=NOTEBOOK,
        signature="sgd_step(w, grad, lr)",
        arg_names=("w", "grad", "lr"),
        reference=_sgd,
        cases=_sgd_cases,
        mistakes=(
            Mistake(
                "ascent",
                "you stepped uphill: gradient descent subtracts, w - lr * grad.",
                models=(lambda w, g, lr: w + lr * g,),
            ),
            Mistake(
                "lr_ignored",
                "the learning rate is missing: the step is lr * grad, w - lr * grad.",
                models=(lambda w, g, lr: w - g,),
            ),
            Mistake(
                "returns_step",
                "you returned the step, not the new weights: return w - lr * grad.",
                models=(lambda w, g, lr: -lr * g, lambda w, g, lr: lr * g),
            ),
        ),
    )
)


# --------------------------------------------------------------------------- stateful steps


class StepExercise(Exercise):
    """An optimizer step checked along a fixed gradient sequence.

    A case is ``Case(label, (w0, grads), hyper)`` with ``grads`` of shape ``(K, *w0.shape)``.
    The output the judge sees is the list of the function's returns, one per step (the driver
    stops early if a return cannot be fed back).

    Parameters
    ----------
    optimizer : callable
        ``optimizer(**hyper)`` builds the reference ``lossutils`` optimizer.
    initial_state : callable
        ``initial_state(w0)``: the state given to the first call.
    call_args : callable
        ``call_args(w, g, state, hyper) -> (args, kwargs)`` for one call.
    cases : callable
        ``cases(rng, hidden) -> list[Case]``.
    state_name : str
        ``"v"`` for a velocity array (compared with the reference's ``v``), or ``"state"``
        for a dict holding the step count ``t`` and arrays.
    state_fields : tuple of str
        For dict states, the arrays compared with the reference optimizer's state.
    extra_fields : tuple of str
        For dict states, arrays that must be present with the shape of ``w``, whose values
        are judged only through the steps they lead to (AMSGrad's ``r_max``).
    """

    def __init__(
        self,
        id: str,
        *,
        optimizer: Callable,
        initial_state: Callable[[np.ndarray], Any],
        call_args: Callable[[np.ndarray, np.ndarray, Any, dict], tuple[tuple, dict]],
        cases: Callable[[np.random.Generator, bool], list[Case]],
        state_name: str,
        state_fields: Sequence[str] = (),
        extra_fields: Sequence[str] = (),
        **kw: Any,
    ):
        super().__init__(id, **kw)
        self.optimizer = optimizer
        self.initial_state = initial_state
        self.call_args = call_args
        self._cases = cases
        self.state_name = state_name
        self.state_fields = tuple(state_fields)
        self.extra_fields = tuple(extra_fields)

    def make_cases(self, rng: np.random.Generator, hidden: bool) -> list[Case]:
        return self._cases(rng, hidden)

    def describe_input(self, case: Case) -> str:
        w0, grads = case.args
        hyper = ", ".join(f"{k}={v!r}" for k, v in case.kwargs.items()) or "the defaults"
        return (f"w = {fmt(w0, 'w = ')}\n"
                f"gradients, one per step = {fmt(grads, 'gradients, one per step = ')}\n"
                f"{self.state_name} starts as {fmt(self.initial_state(w0))}\n"
                f"hyperparameters: {hyper}")

    # -- driving -------------------------------------------------------------

    def _drive(self, run, case: Case) -> Outcome:
        """Feed the function its own returns along the gradient sequence."""
        w0, grads = case.args
        w, state = w0.copy(), self.initial_state(w0)
        steps, texts, printed, modified = [], [], [], []
        error = None
        for k, g in enumerate(grads):
            args, kwargs = self.call_args(w, g.copy(), state, case.kwargs)
            outcome = run(args, kwargs)
            texts += outcome.warnings
            printed.append(outcome.stdout)
            modified += [f"{name} (step {k + 1})" for name in outcome.modified]
            if outcome.error is not None:
                error = f"{outcome.error} at step {k + 1}"
                break
            steps.append(outcome.output)
            fed = self._feedback(outcome.output)
            if fed is None:
                break
            w, state = fed
        return Outcome(steps, error, tuple(texts), "".join(printed), tuple(modified))

    def call(self, fn: Callable, case: Case, uses: Mapping | None = None) -> Outcome:
        return self._drive(lambda a, k: call_safely(fn, a, k, self.arg_names), case)

    def _run_model(self, model, case) -> list:
        def run(args, kwargs):
            try:
                return Outcome(quiet(model, *args, **kwargs))
            except Exception as exc:  # a model that fails here cannot explain the output
                return Outcome(error=exception_text(exc))

        return self._drive(run, case).output

    def _feedback(self, out):
        """Copies of the returned (w, state) if they can be fed to the next call, else None."""
        if type(out) is not tuple or len(out) != 2 or type(out[0]) is not np.ndarray:
            return None
        state = _safe_copy(out[1])
        return None if state is None else (out[0].copy(), state)

    # -- judging -------------------------------------------------------------

    def reference_steps(self, case: Case) -> list[tuple[np.ndarray, dict]]:
        w0, grads = case.args
        opt = self.optimizer(**case.kwargs)
        w, out = w0, []
        for g in grads:
            w = quiet(opt.step, w, g)
            out.append((w, opt.state))
        return out

    def judge(self, case: Case, output: Any, warnings: Sequence[str] = ()) -> Verdict:
        ref = self.reference_steps(case)
        if type(output) is not list:  # only the driver builds this list
            return Verdict(False, f"no steps were recorded ({describe_returned(output)}).")
        for k, (ref_w, ref_state) in enumerate(ref):
            prefix = f"step {k + 1} of {len(ref)}"
            if k >= len(output):
                return Verdict(
                    False,
                    f"{prefix}: what step {k} returned could not be passed to the next call; "
                    f"return new_w as an array and new_{self.state_name} made only of numpy "
                    "arrays and numbers.",
                    "wrong_type",
                    GENERIC["wrong_type"],
                )
            failure = self._judge_step(output[k], ref_w, ref_state, k)
            if failure is None:
                continue
            stage, message, shown, advice = failure
            message = f"{prefix}: {message}\n{shown}"
            explained: tuple[Mistake, ...] = ()
            if stage in ("finite", "values"):
                explained = self._explain_steps(case, output, k, ref)
            return self.verdict(message, stage, explained, advice)
        return Verdict(True)

    def _judge_step(self, out, ref_w, ref_state, k):
        if type(out) is not tuple or len(out) != 2:
            return ("type", f"returned {describe_returned(out)}; expected a tuple "
                    f"(new_w, new_{self.state_name}).", "",
                    f"return both results as one tuple: return new_w, new_{self.state_name}.")
        new_w, new_state = out
        failure = _value_failure(new_w, ref_w, "new_w")
        if failure is not None:
            return failure
        if self.state_name == "v":
            return _value_failure(new_state, ref_state["v"], "new_v")
        return self._judge_state(new_state, ref_w, ref_state, k)

    def _judge_state(self, state, ref_w, ref_state, k):
        if type(state) is not dict:
            return ("type", f"returned as state {describe_returned(state)}; expected a new "
                    "dict with the same keys as the one given.", "", _STATE_ADVICE)
        missing = [key for key in ("t", *self.state_fields, *self.extra_fields)
                   if key not in state]
        if missing:
            return ("type", f"the returned state has no key {missing[0]!r}; keep the keys "
                    f"{['t', *self.state_fields, *self.extra_fields]}.", "", _STATE_ADVICE)
        t = state["t"]
        if type(t) not in (int, float) and not is_numpy_scalar(t, "iuf"):
            return ("type", f"state['t'] is {describe_returned(t)}; expected the step count.",
                    "", None)
        if t != ref_state["t"]:
            return ("values", f"state['t'] is {t!r} after {k + 1} step(s); expected "
                    f"{ref_state['t']}: t counts the calls, one more in each returned state.",
                    "", None)
        for key in self.state_fields:
            failure = _value_failure(state[key], ref_state[key], f"state[{key!r}]")
            if failure is not None:
                return failure
        for key in self.extra_fields:
            value = state[key]
            if type(value) is not np.ndarray or value.shape != ref_w.shape:
                return ("type", f"state[{key!r}] is {describe_returned(value)}; expected an "
                        f"array of shape {ref_w.shape}.", "", None)
        return None

    def _explain_steps(self, case: Case, output: list, k: int, ref: list) -> tuple[Mistake, ...]:
        """The mistakes whose model reproduces the student's step ``k`` and every later step.

        w and the state count: storing the bias-corrected moments, or handing back the old
        velocity, leaves a step's w right. Two mistakes can agree on the first wrong step
        (RMSProp's bias correction and AdaGrad's sum both give r = g * g at t = 1), so the
        later steps decide.
        """
        got = [self._step_values(out) for out in output[k:]]
        if got[0] is None:
            return ()
        ref_w, ref_state = ref[k]
        ref_values = self._step_values((ref_w, ref_state["v"] if self.state_name == "v"
                                        else ref_state))
        dtype = ref_w.dtype
        found = []
        for mistake in self.mistakes:
            for model in mistake.models:
                values = [self._step_values(s) for s in self._run_model(model, case)[k:]]
                if len(values) < len(got) or values[0] is None \
                        or close(values[0], ref_values, dtype):
                    continue
                if all(g is None or (m is not None and close(g, m, dtype))
                       for g, m in zip(got, values, strict=False)):
                    found.append(mistake)
                    break
        return tuple(found)

    def _step_values(self, out: Any) -> np.ndarray | None:
        """One step's new w and compared state arrays, flattened to float64; None if unusable.

        The state is part of what a mistake must reproduce: storing the bias-corrected
        moments, or handing back the old velocity, leaves this step's w right.
        """
        if type(out) is not tuple or len(out) != 2:
            return None
        w, state = out
        if self.state_name == "v":
            parts = [w, state]
        elif type(state) is dict and all(key in state for key in self.state_fields):
            parts = [w, *(state[key] for key in self.state_fields)]
        else:
            return None
        if any(type(p) is not np.ndarray or p.dtype.kind != "f" or p.shape != np.shape(w)
               for p in parts):
            return None
        return np.concatenate([p.astype(np.float64).ravel() for p in parts])


# The generic hint of a "type" failure is about arrays and floats; a state is a dict.
_STATE_ADVICE = ("return the new state as a new dict holding every key of the given one, "
                 "each updated for this step.")


def _value_failure(obj: Any, ref: np.ndarray, what: str):
    got, failure = float_value(obj, ref)
    if failure is None:
        failure = compare(got, ref, np.asarray(ref).dtype)
    if failure is None:
        return None
    stage, message = failure
    advice = dtype_advice(obj, np.asarray(ref).dtype) if stage == "dtype" else None
    return stage, f"{what} {message}", expected_got(ref, obj), advice


def _safe_copy(state):
    """A copy of a returned state made of exact numpy/builtin types, else None."""
    if type(state) is np.ndarray:
        return state.copy()
    if type(state) is dict:
        out = {}
        for key, value in state.items():
            if type(key) is not str:
                return None
            if type(value) is np.ndarray:
                out[key] = value.copy()
            elif type(value) in (int, float) or is_numpy_scalar(value, "iuf"):
                out[key] = value
            else:
                return None
        return out
    return None


# --------------------------------------------------------------------------- momentum


def _momentum_opt(lr, mu):
    return lossutils.Momentum(lr, momentum=mu)


def _momentum_args(w, g, v, hyper):
    return (w, g, v, hyper["lr"], hyper["mu"]), {}


def _sequence(rng, shape, k, dtype, flips=False):
    grads = rng.normal(size=(k, *shape))
    if flips:
        grads *= np.where(np.arange(k) % 2 == 0, 1.0, -1.0).reshape((k,) + (1,) * len(shape))
    return grads.astype(dtype)


def _momentum_cases(rng, hidden):
    cases = [
        Case("FAU: momentum 0.9, lr 1, from w = 1 with gradients 1, 1",
             (np.array([1.0]), np.array([[1.0], [1.0]])), {"lr": 1.0, "mu": 0.9}),
    ]
    for dtype in DTYPES:
        for _ in range(n_random(hidden)):
            shape = (int(rng.integers(1, 5)),)
            k = int(rng.integers(3, 6))
            hyper = {"lr": float(np.round(rng.uniform(0.05, 0.5), 3)),
                     "mu": float(rng.choice([0.5, 0.9, 0.99]))}
            cases.append(Case(f"random {np.dtype(dtype).name}, {k} steps",
                              (rng.normal(size=shape).astype(dtype),
                               _sequence(rng, shape, k, dtype)), hyper))
    return cases


def _mom_torch(w, g, v, lr, mu):
    v = mu * v + g
    return w - lr * v, v


def _mom_flipped(w, g, v, lr, mu):
    v = mu * v + lr * g
    return w - v, v


def _mom_old_v(w, g, v, lr, mu):
    return w + v, mu * v - lr * g


def _mom_returns_given_v(w, g, v, lr, mu):
    new_v = mu * v - lr * g
    return w + new_v, v


def _mom_ema(w, g, v, lr, mu):
    v = mu * v - (1 - mu) * lr * g
    return w + v, v


register(
    StepExercise(
        "momentum_step",
        notebook=NOTEBOOK,
        signature="momentum_step(w, grad, v, lr, mu)",
        arg_names=("w", "grad", "v", "lr", "mu"),
        optimizer=_momentum_opt,
        initial_state=np.zeros_like,
        call_args=_momentum_args,
        cases=_momentum_cases,
        state_name="v",
        mistakes=(
            Mistake(
                "velocity_sign",
                "your velocity has the opposite sign: this exercise uses v = mu v - lr grad "
                "and w = w + v.",
                models=(_mom_flipped,),
            ),
            Mistake(
                "torch_form",
                "you used torch's form (v = mu v + grad, w -= lr v); this exercise uses the "
                "lecture's v = mu v - lr grad, w = w + v.",
                models=(_mom_torch,),
            ),
            Mistake(
                "old_velocity",
                "you moved w with the old velocity: update v = mu v - lr grad first, then "
                "w = w + v with the new v.",
                models=(_mom_old_v,),
            ),
            Mistake(
                "returns_old_velocity",
                "you returned the velocity you were given, so every step starts again from "
                "it: return the updated velocity, the one you moved w with.",
                models=(_mom_returns_given_v,),
            ),
            Mistake(
                "ema_velocity",
                "you averaged the gradient (a (1 - mu) factor); momentum accumulates it: "
                "v = mu v - lr grad.",
                models=(_mom_ema,),
            ),
        ),
    )
)


# --------------------------------------------------------------------------- Adam, AMSGrad

_ADAM_DEFAULTS = {"lr": 0.001, "mu": 0.9, "rho": 0.999, "eps": 1e-8}


def _adam_state(w0):
    return {"t": 0, "m": np.zeros_like(w0), "r": np.zeros_like(w0)}


def _amsgrad_state(w0):
    return {**_adam_state(w0), "r_max": np.zeros_like(w0)}


def _dict_args(w, g, state, hyper):
    return (w, g, state), dict(hyper)


def _adam_cases(rng, hidden, *, flips=False):
    cases = [
        Case("FAU's test: lr=1, mu=0.01, rho=0.02 from w = 1 with gradients 1, 0.5",
             (np.array([1.0]), np.array([[1.0], [0.5]])),
             {"lr": 1.0, "mu": 0.01, "rho": 0.02, "eps": 1e-8}),
        Case("sign-flipping gradients 3, -1, -1, 3, -1, -1",
             (np.array([0.0]), np.array([[3.0], [-1.0], [-1.0], [3.0], [-1.0], [-1.0]])),
             {"lr": 0.1, "mu": 0.9, "rho": 0.99, "eps": 1e-8}),
        Case("large eps = 0.1",
             (np.array([1.0, -1.0]), np.array([[0.5, 0.2], [0.1, -0.3], [0.4, 0.4]])),
             {"lr": 0.1, "mu": 0.9, "rho": 0.999, "eps": 0.1}),
        Case("default hyperparameters",
             (np.array([0.5, 1.5, -2.0]), _sequence(rng, (3,), 3, np.float64)), {}),
    ]
    for dtype in DTYPES:
        for _ in range(n_random(hidden)):
            shape = (int(rng.integers(1, 5)),)
            k = int(rng.integers(3, 7))
            hyper = dict(_ADAM_DEFAULTS, lr=float(np.round(rng.uniform(0.01, 0.5), 3)),
                         mu=float(rng.choice([0.5, 0.9])), rho=float(rng.choice([0.9, 0.999])))
            cases.append(Case(f"random {np.dtype(dtype).name}, {k} steps",
                              (rng.normal(size=shape).astype(dtype),
                               _sequence(rng, shape, k, dtype, flips=flips)), hyper))
    return cases


def _adam_like(w, g, state, lr, mu, rho, eps, *, zero_based=False, correct=lambda m, r, t, mu,
               rho: (m / (1 - mu**t), r / (1 - rho**t)), swap=False, denominator=None,
               amsgrad=None, store_corrected=False):
    """Adam and AMSGrad with one mistake switched on: the catalogue's models."""
    t = state["t"] if zero_based else state["t"] + 1
    a, b = (rho, mu) if swap else (mu, rho)
    m = a * state["m"] + (1 - a) * g
    r = b * state["r"] + (1 - b) * g * g
    m_hat, r_hat = correct(m, r, t, mu, rho)
    new = {"t": state["t"] + 1, "m": m_hat, "r": r_hat} if store_corrected \
        else {"t": state["t"] + 1, "m": m, "r": r}
    if amsgrad is not None:
        num, den, new["r_max"] = amsgrad(state, m, r, m_hat, r_hat, t, rho)
    else:
        num, den = m_hat, np.sqrt(r_hat)
    den = den + eps if denominator is None else denominator(r_hat, eps)
    return w - lr * num / den, new


def _adam_model(**mistake):
    def model(w, grad, state, lr=0.001, mu=0.9, rho=0.999, eps=1e-8):
        return _adam_like(w, grad, state, lr, mu, rho, eps, **mistake)

    return model


def _ams_model(rule):
    return _adam_model(amsgrad=rule)


_ADAM_MISTAKES = (
    Mistake(
        "bias_correction_multiplies",
        "the bias correction rescales each moment by a factor that depends on the step "
        "count t; multiplying by (1 - mu) is not it.",
        models=(_adam_model(correct=lambda m, r, t, mu, rho: (m * (1 - mu), r * (1 - rho))),),
    ),
    Mistake(
        "no_bias_correction",
        "the bias correction is missing: m and r start at 0 and are biased towards 0 in "
        "the first steps; correct both before the step.",
        models=(_adam_model(correct=lambda m, r, t, mu, rho: (m, r)),),
    ),
    Mistake(
        "stores_corrected_moments",
        "the state must keep the raw moving averages m and r; the bias-corrected values "
        "are for this step's update only (stored, they are corrected again at every later "
        "step).",
        models=(_adam_model(store_corrected=True),),
    ),
    Mistake(
        "step_counter",
        "the step counter is off: increment t before the bias correction, so that the first "
        "step uses t = 1 (with t = 0 the correction divides by zero).",
        models=(_adam_model(zero_based=True),),
    ),
    Mistake(
        "moments_swapped",
        "mu and rho are swapped: mu decays the first moment m (of g), rho the second "
        "moment r (of g * g).",
        models=(_adam_model(swap=True),),
    ),
    Mistake(
        "eps_inside_sqrt",
        "eps goes outside the square root: it is added to the root of the second moment, "
        "to keep the division safe, not to the moment itself.",
        models=(_adam_model(denominator=lambda r_hat, eps: np.sqrt(r_hat + eps)),),
    ),
    Mistake(
        "missing_sqrt",
        "the square root is missing: the step divides by the root of the second moment, "
        "which has the units of the gradient.",
        models=(_adam_model(denominator=lambda r_hat, eps: r_hat + eps),),
    ),
)

register(
    StepExercise(
        "adam_step",
        notebook=NOTEBOOK,
        signature="adam_step(w, grad, state, lr=0.001, mu=0.9, rho=0.999, eps=1e-8)",
        arg_names=("w", "grad", "state"),
        optimizer=lossutils.Adam,
        initial_state=_adam_state,
        call_args=_dict_args,
        cases=_adam_cases,
        state_name="state",
        state_fields=("m", "r"),
        mistakes=_ADAM_MISTAKES,
    )
)


def _ams_momentum(state, m, r, m_hat, r_hat, t, rho):
    # The transcript's error: the running maximum taken over the first moment.
    r_max = np.maximum(state["r_max"], m_hat)
    return r_max, np.sqrt(r_hat), r_max


def _ams_none(state, m, r, m_hat, r_hat, t, rho):
    return m_hat, np.sqrt(r_hat), np.maximum(state["r_max"], r_hat)


def _ams_torch(state, m, r, m_hat, r_hat, t, rho):
    r_max = np.maximum(state["r_max"], r)
    return m_hat, np.sqrt(r_max / (1 - rho**t)), r_max


def _ams_not_stored(state, m, r, m_hat, r_hat, t, rho):
    return m_hat, np.sqrt(np.maximum(state["r_max"], r_hat)), r_hat


register(
    StepExercise(
        "amsgrad_step",
        notebook=NOTEBOOK,
        signature="amsgrad_step(w, grad, state, lr=0.001, mu=0.9, rho=0.999, eps=1e-8)",
        arg_names=("w", "grad", "state"),
        optimizer=lossutils.AMSGrad,
        initial_state=_amsgrad_state,
        call_args=_dict_args,
        cases=lambda rng, hidden: _adam_cases(rng, hidden, flips=True),
        state_name="state",
        state_fields=("m", "r"),
        extra_fields=("r_max",),
        mistakes=(
            Mistake(
                "max_over_momentum",
                "the running maximum is over the second moment r_hat, not over the momentum "
                "m_hat: r_max = max(r_max, r_hat), then divide by sqrt(r_max) + eps.",
                models=(_ams_model(_ams_momentum),),
            ),
            Mistake(
                "no_max",
                "this is plain Adam: divide by sqrt(r_max) + eps with r_max = max(r_max, "
                "r_hat), so that the step never grows.",
                models=(_ams_model(_ams_none),),
            ),
            Mistake(
                "torch_amsgrad",
                "you took the maximum of the raw r and bias-corrected it afterwards (torch's "
                "variant); this exercise keeps the maximum of the corrected r_hat.",
                models=(_ams_model(_ams_torch),),
            ),
            Mistake(
                "max_not_stored",
                "you used max(r_max, r_hat) but stored r_hat in the state: store the "
                "maximum, r_max = max(r_max, r_hat), so it is carried to the next step.",
                models=(_ams_model(_ams_not_stored),),
            ),
            *_ADAM_MISTAKES[:4],
        ),
    )
)


# --------------------------------------------------------------------------- Nesterov


class _LectureNesterov:
    """The reference: the lecture's Nesterov step, the gradient taken at w + mu v.

    ``lossutils.Nesterov`` works in the look-ahead coordinates (it is given the gradient at
    the point it returns); this exercise hands the student ``grad_fn`` and keeps the
    lecture's variables, so the reference takes ``grad_fn`` too and ignores ``g``.
    """

    def __init__(self, grad_fn, lr, mu):
        self.grad_fn, self.lr, self.mu = grad_fn, lr, mu
        self.t, self.v = 0, None

    def step(self, w, g):
        if self.v is None:
            self.v = np.zeros_like(w)
        self.v = self.mu * self.v - self.lr * self.grad_fn(w + self.mu * self.v)
        self.t += 1
        return w + self.v

    @property
    def state(self):
        return {"t": self.t, "v": self.v.copy()}


class LookaheadStepExercise(StepExercise):
    """A step that computes its own gradients with a checker-made ``grad_fn``.

    A case is ``Case(label, (w0, steps), {"grad_fn": ..., "lr": ..., "mu": ...})`` where
    ``steps`` has one (empty) row per step: the driver of :class:`StepExercise` runs that
    many steps, and ``grad_fn`` (a :class:`~lossutils.checks._given.GivenFunction`) is
    passed to every call.
    """

    def describe_input(self, case):
        w0, steps = case.args
        hyper = {k: v for k, v in case.kwargs.items() if k != "grad_fn"}
        grad_fn = case.kwargs["grad_fn"]
        params = grad_fn.params
        return (f"w = {fmt(w0, 'w = ')}\n"
                f"grad_fn = {fmt(grad_fn)}\n"
                f"    with H = {fmt(params['hessian'], '    with H = ')}\n"
                f"    and w_min = {fmt(params['center'], '    and w_min = ')}\n"
                f"v starts as {fmt(self.initial_state(w0))}; {len(steps)} steps\n"
                f"hyperparameters: " + ", ".join(f"{k}={v!r}" for k, v in hyper.items()))


def _lookahead_args(w, g, v, hyper):
    return (w, hyper["grad_fn"], v, hyper["lr"], hyper["mu"]), {}


def _spd(rng, n):
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    return (q * rng.uniform(0.5, 3.0, size=n)) @ q.T


def _bowl(rng, n):
    from ._given import GivenFunction

    return GivenFunction("quadratic_grad", hessian=_spd(rng, n), center=rng.normal(size=n))


def _nesterov_cases(rng, hidden):
    from ._given import GivenFunction

    valley = GivenFunction("quadratic_grad", hessian=np.diag([1.0, 10.0]),
                           center=np.zeros(2))
    cases = [
        Case("the valley f = (w1^2 + 10 w2^2) / 2 of section 3, from (-2, 1)",
             (np.array([-2.0, 1.0]), np.empty((4, 0))),
             {"grad_fn": valley, "lr": 0.05, "mu": 0.9}),
        Case("a tilted bowl, lr = 1", (np.array([1.0, -1.0, 0.5]), np.empty((3, 0))),
             {"grad_fn": _bowl(rng, 3), "lr": 1.0, "mu": 0.5}),
    ]
    for dtype in DTYPES:
        for _ in range(n_random(hidden)):
            n, k = int(rng.integers(2, 5)), int(rng.integers(3, 7))
            hyper = {"grad_fn": _bowl(rng, n), "lr": float(np.round(rng.uniform(0.05, 0.4), 3)),
                     "mu": float(rng.choice([0.5, 0.9]))}
            cases.append(Case(f"random {np.dtype(dtype).name}, {k} steps",
                              (rng.normal(size=n).astype(dtype), np.empty((k, 0))), hyper))
    return cases


def _nesterov_model(look, *, sign=1.0, lr_scale=True, framework=False, old_v=False):
    """Nesterov with one mistake switched on: ``look(w, v, mu)`` is where the gradient is taken."""

    def model(w, grad_fn, v, lr, mu):
        g = grad_fn(look(w, sign * v, mu))
        new_v = mu * v - sign * (lr if lr_scale else 1.0) * g
        if framework:
            return w + mu * new_v - lr * g, new_v
        return (w + sign * v if old_v else w + sign * new_v), new_v

    return model


register(
    LookaheadStepExercise(
        "nesterov_step",
        notebook=NOTEBOOK,
        signature="nesterov_step(w, grad_fn, v, lr, mu)",
        arg_names=("w", "grad_fn", "v", "lr", "mu"),
        optimizer=_LectureNesterov,
        initial_state=np.zeros_like,
        call_args=_lookahead_args,
        cases=_nesterov_cases,
        state_name="v",
        mistakes=(
            Mistake(
                "gradient_at_w",
                "you took the gradient at w: that is plain momentum. Nesterov looks ahead: "
                "the gradient is grad_fn(w + mu * v), at the point momentum is carrying you to.",
                models=(_nesterov_model(lambda w, v, mu: w),),
            ),
            Mistake(
                "lookahead_without_mu",
                "the look-ahead point is w + mu * v, not w + v: momentum will carry you by "
                "mu * v before the new gradient acts.",
                models=(_nesterov_model(lambda w, v, mu: w + v),),
            ),
            Mistake(
                "framework_form",
                "you used the frameworks' form in look-ahead coordinates (w + mu v_new - lr g "
                "with g at w); this exercise keeps the lecture's variables: "
                "v = mu v - lr grad_fn(w + mu v), then w = w + v.",
                models=(_nesterov_model(lambda w, v, mu: w, framework=True),),
            ),
            Mistake(
                "velocity_sign",
                "your velocity has the opposite sign: this exercise uses "
                "v = mu v - lr grad_fn(w + mu v) and w = w + v.",
                models=(_nesterov_model(lambda w, v, mu: w + mu * v, sign=-1.0),),
            ),
            Mistake(
                "old_velocity",
                "you moved w with the old velocity: compute the new v first, then w = w + v "
                "with the new v.",
                models=(_nesterov_model(lambda w, v, mu: w + mu * v, old_v=True),),
            ),
            Mistake(
                "lr_ignored",
                "the learning rate is missing: v = mu v - lr * grad_fn(w + mu v).",
                models=(_nesterov_model(lambda w, v, mu: w + mu * v, lr_scale=False),),
            ),
        ),
    )
)


# --------------------------------------------------------------------------- AdaGrad, RMSProp


def _adagrad_opt(**hyper):
    from lossutils import AdaGrad

    return AdaGrad(**hyper)


def _rmsprop_opt(**hyper):
    from lossutils import RMSProp

    return RMSProp(**hyper)


def _r_state(w0):
    return {"t": 0, "r": np.zeros_like(w0)}


def _adaptive_cases(rng, hidden, *, rho):
    """Hand-made sequences (with a large eps, where eps inside the root shows), then random.

    ``rho`` is None for AdaGrad (its hyperparameters are lr and eps only).
    """
    with_rho = {} if rho is None else {"rho": rho}
    cases = [
        Case("lr = 1, eps = 0 from w = 1 with gradients 3, 4",
             (np.array([1.0]), np.array([[3.0], [4.0]])), {"lr": 1.0, **with_rho, "eps": 0.0}),
        Case("large eps = 0.1, gradients of different sizes per coordinate",
             (np.array([1.0, -1.0]), np.array([[0.5, 0.02], [0.1, -0.03], [0.4, 0.05]])),
             {"lr": 0.1, **with_rho, "eps": 0.1}),
        Case("default eps" + ("" if rho is None else " and rho"),
             (np.array([0.5, 1.5, -2.0]), _sequence(rng, (3,), 3, np.float64)), {"lr": 0.05}),
    ]
    for dtype in DTYPES:
        for _ in range(n_random(hidden)):
            shape = (int(rng.integers(1, 5)),)
            k = int(rng.integers(3, 7))
            hyper = {"lr": float(np.round(rng.uniform(0.01, 0.5), 3))}
            if rho is not None:
                hyper["rho"] = float(rng.choice([0.5, 0.9, 0.99]))
            hyper["eps"] = float(rng.choice([1e-8, 1e-3]))
            grads = _sequence(rng, shape, k, dtype) * dtype(rng.choice([0.1, 1.0, 10.0]))
            cases.append(Case(f"random {np.dtype(dtype).name}, {k} steps",
                              (rng.normal(size=shape).astype(dtype), grads), hyper))
    return cases


def _adaptive_model(accumulate, *, denominator=lambda r, eps: np.sqrt(r) + eps,
                    after=False, correct=None):
    """AdaGrad or RMSProp with one mistake switched on.

    ``accumulate(r, g, rho)`` is the new r; ``after`` uses the old r in the step (r updated
    after the step); ``correct(r, rho, t)`` bias-corrects r as Adam does.
    """

    def model(w, grad, state, lr, rho=0.9, eps=1e-8):
        t = state["t"] + 1
        r = accumulate(state["r"], grad, rho)
        used = state["r"] if after else r
        if correct is not None:
            used = correct(used, rho, t)
        return w - lr * grad / denominator(used, eps), {"t": t, "r": r}

    return model


def _sum_sq(r, g, rho):
    return r + g * g


def _ema_sq(r, g, rho):
    return rho * r + (1 - rho) * g * g


def _adagrad_model(accumulate=_sum_sq, **mistake):
    model = _adaptive_model(accumulate, **mistake)

    def adagrad(w, grad, state, lr, eps=1e-8):
        return model(w, grad, state, lr, eps=eps)

    return adagrad


def _eps_inside(model):
    return Mistake(
        "eps_inside_sqrt",
        "eps goes outside the square root: w - lr * g / (sqrt(r) + eps).",
        models=(model(denominator=lambda r, eps: np.sqrt(r + eps)),),
    )


def _missing_sqrt(model):
    return Mistake(
        "missing_sqrt",
        "the square root is missing: divide by sqrt(r) + eps, which has the units of the "
        "gradient, so that each step is about lr per coordinate.",
        models=(model(denominator=lambda r, eps: r + eps),),
    )


def _r_after(model):
    return Mistake(
        "r_updated_after_step",
        "you divided by the old r: add this step's g * g to r first, then divide by "
        "sqrt(r) + eps (with r = 0 the first step would divide by eps alone).",
        models=(model(after=True),),
    )


def _decayed(rho):
    return _adagrad_model(lambda r, g, _: rho * r + (1 - rho) * g * g)


register(
    StepExercise(
        "adagrad_step",
        notebook=NOTEBOOK,
        signature="adagrad_step(w, grad, state, lr, eps=1e-8)",
        arg_names=("w", "grad", "state"),
        optimizer=_adagrad_opt,
        initial_state=_r_state,
        call_args=_dict_args,
        cases=lambda rng, hidden: _adaptive_cases(rng, hidden, rho=None),
        state_name="state",
        state_fields=("r",),
        mistakes=(
            Mistake(
                "decayed_like_rmsprop",
                "you decayed r like RMSProp (rho r + (1 - rho) g * g); AdaGrad sums every "
                "squared gradient: r = r + g * g, so its steps only shrink.",
                models=tuple(_decayed(rho) for rho in (0.9, 0.99, 0.999)),
            ),
            _eps_inside(lambda **m: _adagrad_model(**m)),
            _missing_sqrt(lambda **m: _adagrad_model(**m)),
            _r_after(lambda **m: _adagrad_model(**m)),
            Mistake(
                "abs_not_square",
                "r sums the squared gradients, g * g, not their absolute values.",
                models=(_adagrad_model(lambda r, g, _: r + np.abs(g)),),
            ),
        ),
    )
)

register(
    StepExercise(
        "rmsprop_step",
        notebook=NOTEBOOK,
        signature="rmsprop_step(w, grad, state, lr, rho=0.9, eps=1e-8)",
        arg_names=("w", "grad", "state"),
        optimizer=_rmsprop_opt,
        initial_state=_r_state,
        call_args=_dict_args,
        cases=lambda rng, hidden: _adaptive_cases(rng, hidden, rho=0.75),
        state_name="state",
        state_fields=("r",),
        mistakes=(
            Mistake(
                "no_decay",
                "this is AdaGrad's running sum; RMSProp forgets old gradients: "
                "r = rho r + (1 - rho) g * g.",
                models=(_adaptive_model(_sum_sq),),
            ),
            Mistake(
                "rho_swapped",
                "rho and 1 - rho are swapped: rho keeps the old r, r = rho r + (1 - rho) g * g.",
                models=(_adaptive_model(lambda r, g, rho: (1 - rho) * r + rho * g * g),),
            ),
            Mistake(
                "bias_corrected",
                "RMSProp has no bias correction (that is Adam's): divide by sqrt(r) + eps "
                "with r itself, not r / (1 - rho^t).",
                models=(_adaptive_model(_ema_sq, correct=lambda r, rho, t: r / (1 - rho**t)),),
            ),
            _eps_inside(lambda **m: _adaptive_model(_ema_sq, **m)),
            _missing_sqrt(lambda **m: _adaptive_model(_ema_sq, **m)),
            _r_after(lambda **m: _adaptive_model(_ema_sq, **m)),
        ),
    )
)
