"""First-order optimizers: SGD, momentum, Nesterov, AdaGrad, RMSProp, Adam and AMSGrad.

Every optimizer has one method, ``step(params, grads) -> new_params``:

- it is pure with respect to its arguments: it returns a new array and never modifies
  ``params`` or ``grads``;
- its state (velocity, moments, the step counter ``t``) lives inside the object and is
  created on the first call with the shape and dtype of ``params``; a later call with another
  shape or dtype raises ``ValueError`` (use a new optimizer, or :meth:`reset`, for another
  problem);
- the result has the dtype of ``params`` (float32 stays float32); ``grads`` are cast to it.

Hyperparameters are validated on construction and on every later assignment; ``lr`` may be
reassigned between steps to follow a schedule (``opt.lr = alpha / math.sqrt(t)``, or
:func:`step_decay`). One array is one parameter tensor: optimise several tensors with one
optimizer each, or concatenate them.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import numpy as np

from ._validation import ArrayLike, FloatArray, as_float, check_same_shape

__all__ = [
    "SGD",
    "AMSGrad",
    "AdaGrad",
    "Adam",
    "Momentum",
    "Nesterov",
    "RMSProp",
    "step_decay",
]

# Every hyperparameter name means the same thing in every optimizer, so one table validates
# them all: name -> (description of the allowed values, predicate).
_HYPERPARAMETERS: dict[str, tuple[str, Callable[[float], bool]]] = {
    "lr": ("a finite number > 0", lambda v: 0 < v < math.inf),
    "momentum": ("a number in [0, 1)", lambda v: 0 <= v < 1),
    "mu": ("a number in [0, 1)", lambda v: 0 <= v < 1),
    "rho": ("a number in [0, 1)", lambda v: 0 <= v < 1),
    "eps": ("a finite number >= 0", lambda v: 0 <= v < math.inf),
}


def _real(name: str, value: object, rule: str | None = None) -> float:
    allowed, ok = _HYPERPARAMETERS[rule or name]
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not ok(float(value)):
        raise ValueError(f"{name} must be {allowed}, got {value!r}.")
    # Python floats keep float32 arithmetic in float32 (numpy treats them as weakly typed).
    return float(value)


class _Optimizer:
    """State handling shared by all optimizers; subclasses define ``_init`` and ``_update``."""

    _state_names: tuple[str, ...] = ()
    t: int
    lr: float
    _shape: tuple[int, ...] | None
    _dtype: np.dtype[Any] | None

    def __init__(self, **hyperparameters: float) -> None:
        for name, value in hyperparameters.items():
            setattr(self, name, value)
        self.reset()

    def __setattr__(self, name: str, value: object) -> None:
        if name in _HYPERPARAMETERS:
            value = _real(name, value)
        super().__setattr__(name, value)

    def __repr__(self) -> str:
        args = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._hyper_names())
        return f"{type(self).__name__}({args})"

    def _hyper_names(self) -> list[str]:
        return [name for name in _HYPERPARAMETERS if name in vars(self)]

    def reset(self) -> None:
        """Forget the state: the next :meth:`step` starts afresh (``t = 0``, zero moments)."""
        self.t = 0
        self._shape = None
        self._dtype = None
        for name in self._state_names:
            setattr(self, "_" + name, None)

    @property
    def state(self) -> dict[str, Any]:
        """A copy of the state, ``{"t": steps taken, name: array, ...}``.

        The arrays are ``None`` before the first step; changing the copy changes nothing.
        """
        out: dict[str, Any] = {"t": self.t}
        for name in self._state_names:
            value = getattr(self, "_" + name)
            out[name] = None if value is None else value.copy()
        return out

    def step(self, params: ArrayLike, grads: ArrayLike) -> FloatArray:
        """Return the parameters after one step from ``params`` with gradient ``grads``.

        Parameters
        ----------
        params : array_like
            Current parameters, any shape; not modified.
        grads : array_like, shape of ``params``
            Gradient of the loss at ``params``; not modified.

        Returns
        -------
        ndarray, shape and dtype of ``params``
            A new array.

        Raises
        ------
        ValueError
            If the shapes of ``params`` and ``grads`` differ, or ``params`` has another
            shape or dtype than on the first call.
        """
        w = as_float(params, "params")
        g = as_float(grads, "grads")
        check_same_shape(w, g, "params", "grads")
        if self._shape is None:
            self._shape, self._dtype = w.shape, w.dtype
            for name in self._state_names:
                setattr(self, "_" + name, np.zeros_like(w))
        elif (w.shape, w.dtype) != (self._shape, self._dtype):
            raise ValueError(
                f"params has shape {w.shape} and dtype {w.dtype}, but this optimizer's state "
                f"was created for shape {self._shape} and dtype {self._dtype} on its first "
                "step; use one optimizer per parameter array, or call reset() to start over."
            )
        self.t += 1
        # Each update rebinds its state to new arrays and returns a new array: nothing the
        # caller holds is written to, and nothing returned aliases the state.
        return np.asarray(self._update(w, g.astype(w.dtype, copy=False)))

    def _update(self, w: FloatArray, g: FloatArray) -> FloatArray:
        raise NotImplementedError


class SGD(_Optimizer):
    r"""Plain (stochastic) gradient descent.

    .. math::

        w \leftarrow w - \eta\, g

    Parameters
    ----------
    lr : float
        Learning rate :math:`\eta > 0`; may be reassigned between steps.

    Raises
    ------
    ValueError
        If ``lr`` is not a finite number > 0.

    Examples
    --------
    >>> opt = SGD(lr=1.0)
    >>> opt.step([1.0], [1.0])
    array([0.])
    """

    def __init__(self, lr: float) -> None:
        super().__init__(lr=lr)

    def _update(self, w: FloatArray, g: FloatArray) -> FloatArray:
        return w - self.lr * g


class Momentum(_Optimizer):
    r"""Gradient descent with (heavy-ball) momentum, in the lecture's form.

    .. math::

        v \leftarrow \mu\, v - \eta\, g, \qquad w \leftarrow w + v, \qquad v_0 = 0

    Parameters
    ----------
    lr : float
        Learning rate :math:`\eta > 0`; may be reassigned between steps.
    momentum : float, default 0.9
        :math:`\mu \in [0, 1)`; typical values 0.9, 0.95, 0.99. ``0`` is plain SGD.

    Raises
    ------
    ValueError
        If a hyperparameter is out of range.

    Notes
    -----
    ``torch.optim.SGD(momentum=mu, dampening=0)`` (its default) accumulates the gradient
    instead, :math:`b \leftarrow \mu b + g,\ w \leftarrow w - \eta b`; with
    :math:`v = -\eta b` the two are identical while :math:`\eta` is constant. When
    :math:`\eta` changes they differ: here the velocity keeps the old learning rates, in
    torch a new :math:`\eta` rescales the whole accumulated buffer. With ``dampening=d``,
    torch adds :math:`(1 - d)\,g` instead of :math:`g` (no equivalent here).

    State: ``v``, the velocity.

    References
    ----------
    .. [1] B. T. Polyak, "Some methods of speeding up the convergence of iteration
       methods", USSR Comput. Math. Math. Phys. 4(5), 1964.

    Examples
    --------
    >>> opt = Momentum(lr=1.0, momentum=0.9)
    >>> w = opt.step([1.0], [1.0]); w
    array([0.])
    >>> opt.step(w, [1.0])  # v = 0.9 * (-1) - 1
    array([-1.9])
    """

    _state_names = ("v",)
    momentum: float
    _v: FloatArray

    def __init__(self, lr: float, momentum: float = 0.9) -> None:
        super().__init__(lr=lr, momentum=momentum)

    def _update(self, w: FloatArray, g: FloatArray) -> FloatArray:
        self._v = self.momentum * self._v - self.lr * g
        return w + self._v


class Nesterov(_Optimizer):
    r"""Nesterov accelerated gradient, reformulated for a ``step(params, grads)`` interface.

    The lecture's form evaluates the gradient at the look-ahead point:

    .. math::

        v \leftarrow \mu\, v - \eta\, \nabla f(\theta + \mu v), \qquad
        \theta \leftarrow \theta + v .

    ``step`` only receives the gradient at the parameters it is given, so the optimizer works
    with the look-ahead point :math:`w = \theta + \mu v` itself (Bengio et al. 2012;
    Sutskever et al. 2013). Substituting gives, with :math:`g = \nabla f(w)`:

    .. math::

        v \leftarrow \mu\, v - \eta\, g, \qquad w \leftarrow w + \mu\, v - \eta\, g
        \quad\text{(with the new } v\text{)}, \qquad v_0 = 0 .

    Parameters
    ----------
    lr : float
        Learning rate :math:`\eta > 0`; may be reassigned between steps.
    momentum : float, default 0.9
        :math:`\mu \in [0, 1)`.

    Raises
    ------
    ValueError
        If a hyperparameter is out of range.

    Notes
    -----
    The parameters passed and returned are the look-ahead points :math:`\theta_t + \mu v_t`
    of the lecture's sequence, not :math:`\theta_t`; both converge to the same point (they
    differ by :math:`\mu v \to 0`), and the first ones are exactly where the lecture evaluates
    its gradients. With a constant :math:`\eta` this is the update of
    ``torch.optim.SGD(momentum=mu, nesterov=True, dampening=0)`` (with :math:`v = -\eta b`).

    State: ``v``, the velocity.

    References
    ----------
    .. [1] Y. Bengio, N. Boulanger-Lewandowski and R. Pascanu, "Advances in optimizing
       recurrent networks", arXiv:1212.0901, 2012 (Sec. 3.5).
    .. [2] I. Sutskever, J. Martens, G. Dahl and G. Hinton, "On the importance of
       initialization and momentum in deep learning", ICML 2013.

    Examples
    --------
    >>> opt = Nesterov(lr=1.0, momentum=0.5)
    >>> w = opt.step([1.0], [1.0]); w  # v = -1, w = 1 + 0.5 * (-1) - 1
    array([-0.5])
    >>> opt.step(w, [1.0])  # v = -1.5, w = -0.5 + 0.5 * (-1.5) - 1
    array([-2.25])
    """

    _state_names = ("v",)
    momentum: float
    _v: FloatArray

    def __init__(self, lr: float, momentum: float = 0.9) -> None:
        super().__init__(lr=lr, momentum=momentum)

    def _update(self, w: FloatArray, g: FloatArray) -> FloatArray:
        self._v = self.momentum * self._v - self.lr * g
        new_w: FloatArray = w + self.momentum * self._v - self.lr * g
        return new_w


class AdaGrad(_Optimizer):
    r"""AdaGrad: per-coordinate steps scaled by the root of the summed squared gradients.

    .. math::

        r \leftarrow r + g \odot g, \qquad
        w \leftarrow w - \eta\, \frac{g}{\sqrt{r} + \varepsilon}, \qquad r_0 = 0

    Parameters
    ----------
    lr : float, default 0.01
        Learning rate :math:`\eta > 0`; may be reassigned between steps.
    eps : float, default 1e-8
        :math:`\varepsilon \ge 0`, added to :math:`\sqrt{r}` (as in torch) so that
        coordinates whose gradients were all 0 do not divide 0 by 0.

    Raises
    ------
    ValueError
        If a hyperparameter is out of range.

    Notes
    -----
    :math:`r` only grows, so the effective step :math:`\eta / \sqrt{r}` only shrinks: good
    for convex problems and sparse features, often too aggressive for deep networks.
    The first step has length about :math:`\eta` in each coordinate.

    State: ``r``, the sum of squared gradients.

    References
    ----------
    .. [1] J. Duchi, E. Hazan and Y. Singer, "Adaptive subgradient methods for online
       learning and stochastic optimization", JMLR 12, 2011.

    Examples
    --------
    >>> opt = AdaGrad(lr=1.0, eps=0.0)
    >>> w = opt.step([1.0], [3.0]); w  # r = 9, w = 1 - 3 / 3
    array([0.])
    >>> opt.step(w, [4.0])  # r = 25, w = 0 - 4 / 5
    array([-0.8])
    """

    _state_names = ("r",)
    eps: float
    _r: FloatArray

    def __init__(self, lr: float = 0.01, eps: float = 1e-8) -> None:
        super().__init__(lr=lr, eps=eps)

    def _update(self, w: FloatArray, g: FloatArray) -> FloatArray:
        self._r = self._r + g * g
        return w - self.lr * g / (np.sqrt(self._r) + self.eps)


class RMSProp(_Optimizer):
    r"""RMSProp: AdaGrad with an exponential moving average of the squared gradients.

    .. math::

        r \leftarrow \rho\, r + (1 - \rho)\, g \odot g, \qquad
        w \leftarrow w - \eta\, \frac{g}{\sqrt{r} + \varepsilon}, \qquad r_0 = 0

    Parameters
    ----------
    lr : float, default 0.001
        Learning rate :math:`\eta > 0`; may be reassigned between steps.
    rho : float, default 0.9
        Decay :math:`\rho \in [0, 1)` of the moving average.
    eps : float, default 1e-8
        :math:`\varepsilon \ge 0`, added to :math:`\sqrt{r}` (as in torch; Goodfellow et
        al. put it under the root).

    Raises
    ------
    ValueError
        If a hyperparameter is out of range.

    Notes
    -----
    There is no bias correction: :math:`r_1 = (1 - \rho) g_1^2`, so the first step has
    length about :math:`\eta / \sqrt{1 - \rho}` (3.2 :math:`\eta` for :math:`\rho = 0.9`).
    This is ``torch.optim.RMSprop(alpha=rho, centered=False, momentum=0)``.

    State: ``r``, the moving average of squared gradients.

    References
    ----------
    .. [1] T. Tieleman and G. Hinton, Lecture 6.5 "rmsprop", COURSERA: Neural Networks for
       Machine Learning, 2012.

    Examples
    --------
    >>> opt = RMSProp(lr=1.0, rho=0.75, eps=0.0)
    >>> w = opt.step([1.0], [2.0]); w  # r = 0.25 * 4 = 1, w = 1 - 2 / 1
    array([-1.])
    >>> opt.step(w, [2.0])  # r = 0.75 + 1 = 1.75
    array([-2.51185789])
    """

    _state_names = ("r",)
    rho: float
    eps: float
    _r: FloatArray

    def __init__(self, lr: float = 0.001, rho: float = 0.9, eps: float = 1e-8) -> None:
        super().__init__(lr=lr, rho=rho, eps=eps)

    def _update(self, w: FloatArray, g: FloatArray) -> FloatArray:
        self._r = self.rho * self._r + (1 - self.rho) * g * g
        return w - self.lr * g / (np.sqrt(self._r) + self.eps)


class Adam(_Optimizer):
    r"""Adam: momentum on the gradient, RMSProp scaling, both bias-corrected.

    With the step counter :math:`t` incremented *before* the correction (so :math:`t = 1` on
    the first step) and :math:`m_0 = r_0 = 0`:

    .. math::

        m &\leftarrow \mu\, m + (1 - \mu)\, g, \qquad
        r \leftarrow \rho\, r + (1 - \rho)\, g \odot g, \\
        \hat m &= \frac{m}{1 - \mu^t}, \qquad \hat r = \frac{r}{1 - \rho^t}, \qquad
        w \leftarrow w - \eta\, \frac{\hat m}{\sqrt{\hat r} + \varepsilon} .

    Parameters
    ----------
    lr : float, default 0.001
        Learning rate :math:`\eta > 0`; may be reassigned between steps.
    mu : float, default 0.9
        Decay :math:`\mu \in [0, 1)` of the first moment (Kingma & Ba's :math:`\beta_1`).
    rho : float, default 0.999
        Decay :math:`\rho \in [0, 1)` of the second moment (:math:`\beta_2`).
    eps : float, default 1e-8
        :math:`\varepsilon \ge 0`, added to :math:`\sqrt{\hat r}` (as in the paper and torch).

    Raises
    ------
    ValueError
        If a hyperparameter is out of range.

    Notes
    -----
    The lecture writes :math:`v` for the first moment; it is ``m`` here, as in Kingma & Ba
    and in the state. The bias correction divides by :math:`1 - \mu^t`: the moving averages
    start at 0, and :math:`m_t` is a weighted mean of gradients whose weights sum to
    :math:`1 - \mu^t`. So the first step is :math:`\eta\, g / (|g| + \varepsilon)`, about
    :math:`\eta` per coordinate, whatever the scale of :math:`g`. This is
    ``torch.optim.Adam(betas=(mu, rho), amsgrad=False)``.

    State: ``t``, ``m`` and ``r`` (the uncorrected moments).

    References
    ----------
    .. [1] D. P. Kingma and J. Ba, "Adam: a method for stochastic optimization", ICLR 2015
       (arXiv:1412.6980), Algorithm 1.

    Examples
    --------
    >>> opt = Adam(lr=0.1)
    >>> opt.step([1.0, 1.0], [10.0, -0.5])  # first step: about lr * sign(g), whatever abs(g)
    array([0.9, 1.1])
    """

    _state_names: tuple[str, ...] = ("m", "r")
    mu: float
    rho: float
    eps: float
    _m: FloatArray
    _r: FloatArray

    def __init__(
        self, lr: float = 0.001, mu: float = 0.9, rho: float = 0.999, eps: float = 1e-8
    ) -> None:
        super().__init__(lr=lr, mu=mu, rho=rho, eps=eps)

    def _update_moments(self, g: FloatArray) -> None:
        self._m = self.mu * self._m + (1 - self.mu) * g
        self._r = self.rho * self._r + (1 - self.rho) * g * g

    def _corrected_moments(self) -> tuple[FloatArray, FloatArray]:
        return self._m / (1 - self.mu**self.t), self._r / (1 - self.rho**self.t)

    def _update(self, w: FloatArray, g: FloatArray) -> FloatArray:
        self._update_moments(g)
        m_hat, r_hat = self._corrected_moments()
        return w - self.lr * m_hat / (np.sqrt(r_hat) + self.eps)


class AMSGrad(Adam):
    r"""AMSGrad: Adam whose denominator is the running maximum of the second moment.

    With Adam's bias-corrected moments :math:`\hat m, \hat r` (see :class:`Adam`) and
    :math:`\hat r^{\max}_0 = 0`:

    .. math::

        \hat r^{\max} \leftarrow \max(\hat r^{\max}, \hat r), \qquad
        w \leftarrow w - \eta\, \frac{\hat m}{\sqrt{\hat r^{\max}} + \varepsilon} .

    The maximum is over the **second** moment (elementwise), never over the momentum.

    Parameters
    ----------
    lr : float, default 0.001
        Learning rate :math:`\eta > 0`; may be reassigned between steps (Reddi et al. use
        :math:`\eta_t = \alpha / \sqrt{t}`).
    mu : float, default 0.9
        :math:`\mu \in [0, 1)`, Reddi et al.'s :math:`\beta_1`.
    rho : float, default 0.999
        :math:`\rho \in [0, 1)`, their :math:`\beta_2`.
    eps : float, default 1e-8
        :math:`\varepsilon \ge 0`; the paper has none (``eps=0``).
    bias_correction : bool, default True
        ``False`` gives the paper's Algorithm 2 exactly (with ``eps=0``): raw moments
        :math:`m, r`, :math:`r^{\max} = \max(r^{\max}, r)`,
        :math:`w \leftarrow w - \eta\, m / (\sqrt{r^{\max}} + \varepsilon)`.

    Raises
    ------
    ValueError
        If a hyperparameter is out of range.

    Notes
    -----
    Reddi, Kale & Kumar's Algorithm 2 has no bias correction. By default this class adds
    Adam's, and takes the maximum over the *corrected* second moment :math:`\hat r`. Then:

    - the effective step :math:`\eta / (\sqrt{\hat r^{\max}} + \varepsilon)` never grows for
      a constant :math:`\eta`, which is what the maximum is for (the paper's
      :math:`\Gamma_t \succeq 0`);
    - the first step equals Adam's, and whenever :math:`\hat r` never decreases (e.g. a
      constant gradient) AMSGrad and Adam take identical steps;
    - without correction the first step would be :math:`(1 - \mu) / \sqrt{1 - \rho}` times
      Adam's (3.2 times for the defaults).

    ``torch.optim.Adam(amsgrad=True)`` differs: it takes the maximum of the *raw* second
    moment, :math:`r^{\max} = \max(r^{\max}, r)`, and then bias-corrects that maximum with the
    current step, :math:`\sqrt{r^{\max} / (1 - \rho^t)}`. As :math:`1/(1 - \rho^t)` shrinks
    with :math:`t`, torch's denominator can decrease, so its effective step can grow early in
    training; the two agree once :math:`\rho^t \approx 0`.

    State: ``t``, ``m``, ``r`` (raw moments) and ``r_max`` (the maximum of :math:`\hat r`,
    or of :math:`r` with ``bias_correction=False``).

    References
    ----------
    .. [1] S. J. Reddi, S. Kale and S. Kumar, "On the convergence of Adam and beyond",
       ICLR 2018, Algorithm 2.

    Examples
    --------
    >>> opt = AMSGrad(lr=0.1, mu=0.0, rho=0.5, eps=0.0)
    >>> w = opt.step([0.0], [2.0]); w  # r_hat = 4, r_max = 4: w = -0.1 * 2 / 2
    array([-0.1])
    >>> w = opt.step(w, [1.0]); w  # r_hat = 1.5 / 0.75 = 2 < r_max: divide by 2, not 1.41
    array([-0.15])
    >>> opt.state["r_max"]
    array([4.])
    """

    _state_names = ("m", "r", "r_max")
    _r_max: FloatArray

    def __init__(
        self,
        lr: float = 0.001,
        mu: float = 0.9,
        rho: float = 0.999,
        eps: float = 1e-8,
        *,
        bias_correction: bool = True,
    ) -> None:
        if not isinstance(bias_correction, bool):
            raise ValueError(f"bias_correction must be True or False, got {bias_correction!r}.")
        self.bias_correction = bias_correction
        super().__init__(lr=lr, mu=mu, rho=rho, eps=eps)

    def __repr__(self) -> str:
        return f"{super().__repr__()[:-1]}, bias_correction={self.bias_correction})"

    def _update(self, w: FloatArray, g: FloatArray) -> FloatArray:
        self._update_moments(g)
        m, r = self._corrected_moments() if self.bias_correction else (self._m, self._r)
        self._r_max = np.maximum(self._r_max, r)
        return w - self.lr * m / (np.sqrt(self._r_max) + self.eps)


def step_decay(lr0: float, epoch: int, *, every: int, factor: float = 0.1) -> float:
    r"""Step-decay learning-rate schedule: multiply by ``factor`` every ``every`` epochs.

    .. math::

        \eta(\text{epoch}) = \eta_0 \cdot \text{factor}^{\lfloor \text{epoch} / \text{every}
        \rfloor}

    Parameters
    ----------
    lr0 : float
        Initial learning rate, > 0.
    epoch : int
        Current epoch, counted from 0.
    every : int
        Number of epochs between decays, >= 1.
    factor : float, default 0.1
        Multiplier in (0, 1]; 0.1 divides by 10.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        If an argument is out of range.

    Examples
    --------
    >>> [step_decay(0.01, epoch, every=2) for epoch in range(5)]
    [0.01, 0.01, 0.001, 0.001, 0.0001]
    >>> opt = SGD(lr=0.01)
    >>> opt.lr = step_decay(0.01, 30, every=10)  # set before each epoch
    """
    lr0 = _real("lr0", lr0, "lr")
    for name, value, low in (("epoch", epoch, 0), ("every", every, 1)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")
    if isinstance(factor, bool) or not isinstance(factor, numbers.Real) or not 0 < factor <= 1:
        raise ValueError(f"factor must be a number in (0, 1], got {factor!r}.")
    return lr0 * float(factor) ** (epoch // every)
