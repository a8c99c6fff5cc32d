"""Adversarial attacks used to build the black-box transfer sets.

Reproduces the attack protocol of Xue et al., "Improving Robustness of Medical
Image Diagnosis with Denoising Convolutional Neural Networks" (MICCAI 2019):
adversarial examples are crafted on an undefended ResNet18 surrogate with

* FGSM (Goodfellow et al., 2015), eps in {4, 8} / 255,
* I-FGSM / basic iterative method (Kurakin et al., 2017), 10 steps, eps in {4, 8} / 255,
* Carlini & Wagner L2 (Carlini & Wagner, 2017), 5 binary-search steps x 1000 iterations,

and then transferred to the evaluated (defended) models. Beyond the paper, PGD with a random start
(Madry et al., 2018) joins FGSM and I-FGSM in the white-box evaluation (``pipeline_src/whitebox.py``).

Conventions shared by every function here:

* images are float tensors in [0, 1] of shape (N, C, H, W); the model applies
  its own normalisation and returns logits of shape (N, K);
* labels ``y`` are int64 of shape (N,);
* putting the model in eval mode is the caller's job: attacks never touch
  ``model.training``, never change ``requires_grad`` of parameters and only
  differentiate w.r.t. the input (``torch.autograd.grad``), so parameter
  ``.grad`` fields are left untouched;
* attacks open ``torch.enable_grad()`` themselves so they may be called from
  inside ``torch.no_grad()`` (but not from inside ``torch.inference_mode()``,
  whose tensors can never take part in autograd).

The C&W implementation mirrors foolbox 3.3.4's ``L2CarliniWagnerAttack``
(``foolbox/attacks/carlini_wagner.py``) operation by operation, including its
hand-written Adam (``foolbox/attacks/gradient_descent_base.py::AdamOptimizer``),
so that results agree with the reference implementation. The one deliberate
difference: where no adversarial was found, we return the clean image instead
of foolbox's all-zeros placeholder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "CWResult",
    "cw_l2",
    "fgsm",
    "ifgsm",
    "pgd",
    "random_start",
    "run_attack",
    "success_rate",
    "to_uint8",
]

# Box of valid images. The models take [0, 1] inputs (normalisation is inside).
_MIN, _MAX = 0.0, 1.0


# --------------------------------------------------------------------------- helpers


def _check_inputs(x: Tensor, y: Tensor) -> None:
    """Validate the (images, labels) pair shared by all attacks."""
    assert x.ndim >= 2, f"expected a batch of inputs (N, ...), got shape {tuple(x.shape)}"
    assert x.is_floating_point(), f"expected float images, got {x.dtype}"
    assert y.shape == (x.shape[0],), f"expected labels of shape ({x.shape[0]},), got {tuple(y.shape)}"
    assert not y.is_floating_point(), f"expected integer class labels, got {y.dtype}"
    if torch.is_inference_mode_enabled():
        # enable_grad() cannot lift inference mode; fail loudly instead of with an
        # obscure autograd error deep inside the model.
        raise RuntimeError("attacks need autograd; do not call them inside torch.inference_mode()")
    if x.numel() > 0 and (x.min() < _MIN or x.max() > _MAX):
        # Same contract as foolbox's verify_input_bounds: the tanh reparametrisation
        # of C&W and the final clipping of FGSM only make sense for in-box inputs.
        raise ValueError(
            f"images must lie in [{_MIN}, {_MAX}], got range [{x.min().item()}, {x.max().item()}]"
        )


def _check_logits(logits: Tensor, n: int) -> None:
    assert logits.ndim == 2 and logits.shape[0] == n, (
        f"model must return logits of shape ({n}, K), got {tuple(logits.shape)}"
    )


def _input_grad(model: nn.Module, x_adv: Tensor, y: Tensor) -> Tensor:
    """Gradient of the summed cross-entropy w.r.t. the input only.

    The loss is summed (not averaged) over the batch, as in foolbox, so every
    sample's gradient is independent of the batch size.
    """
    x_adv = x_adv.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x_adv)
        _check_logits(logits, x_adv.shape[0])
        loss = F.cross_entropy(logits, y, reduction="sum")
        # autograd.grad w.r.t. the input only: parameter gradients are neither
        # computed nor accumulated into .grad.
        (grad,) = torch.autograd.grad(loss, x_adv)
    return grad


def _linf_iterative(model: nn.Module, x: Tensor, y: Tensor, eps: float, steps: int, step_size: float,
                    start: Tensor | None = None) -> Tensor:
    """Shared L_inf sign-gradient loop (foolbox ``LinfBaseGradientDescent.run``).

    Each step: x_adv <- clip_[0,1](x + clip(x_adv + a*sign(g) - x, -eps, eps)).
    FGSM is the special case steps=1, step_size=eps; PGD starts from ``start`` (a random
    point of the eps-ball) instead of ``x``.
    """
    _check_inputs(x, y)
    if not (math.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be a finite non-negative number on the [0, 1] scale, got {eps}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    # clone: a tensor created under inference_mode cannot be made to require grad.
    x = x.detach().clone()
    x_adv = x if start is None else start.detach().to(x.device, x.dtype)
    assert x_adv.shape == x.shape, f"start of shape {tuple(x_adv.shape)} for inputs {tuple(x.shape)}"
    for _ in range(steps):
        grad = _input_grad(model, x_adv, y)
        with torch.no_grad():
            x_adv = x_adv + step_size * grad.sign()
            # Project onto the eps-ball around the ORIGINAL image (not the previous
            # iterate), written exactly as foolbox does to agree to the last bit.
            x_adv = x + torch.clamp(x_adv - x, -eps, eps)
            x_adv = torch.clamp(x_adv, _MIN, _MAX)
    assert x_adv.shape == x.shape
    return x_adv.detach()


# --------------------------------------------------------------------------- FGSM / I-FGSM


def fgsm(model: nn.Module, x: Tensor, y: Tensor, eps: float) -> Tensor:
    """Fast gradient sign method, untargeted.

    x_adv = clip_[0,1](x + eps * sign(grad_x CE(model(x), y))).

    Reference: Goodfellow, Shlens & Szegedy, "Explaining and Harnessing
    Adversarial Examples", ICLR 2015. Matches foolbox's ``FGSM``
    (``LinfFastGradientAttack``) with ``random_start=False``.

    Args:
        model: classifier mapping [0, 1] images (N, C, H, W) to logits (N, K);
            should already be in eval mode.
        x: clean images in [0, 1], shape (N, C, H, W).
        y: true labels, int64, shape (N,).
        eps: L_inf budget on the [0, 1] scale (e.g. 8/255).

    Returns:
        Adversarial images, same shape/dtype/device as ``x``, within the
        eps-ball around ``x`` and within [0, 1]. Pixels whose input gradient is
        exactly zero are left unchanged (sign(0) = 0).
    """
    return _linf_iterative(model, x, y, eps=eps, steps=1, step_size=eps)


def ifgsm(model: nn.Module, x: Tensor, y: Tensor, eps: float, steps: int = 10, step_size: float | None = None) -> Tensor:
    """Iterative FGSM / basic iterative method (BIM), untargeted, no random start.

    Each of ``steps`` iterations: x_adv += step_size * sign(grad CE), then
    project onto the L_inf eps-ball around the original ``x`` and clip to [0, 1].

    Reference: Kurakin, Goodfellow & Bengio, "Adversarial Examples in the
    Physical World", ICLR workshop 2017. Matches foolbox's
    ``LinfBasicIterativeAttack(rel_stepsize=1/steps, steps=steps, random_start=False)``.

    Args:
        model: classifier mapping [0, 1] images to logits; already in eval mode.
        x: clean images in [0, 1], shape (N, C, H, W).
        y: true labels, int64, shape (N,).
        eps: L_inf budget on the [0, 1] scale.
        steps: number of iterations (paper: 10).
        step_size: per-step size on the [0, 1] scale; defaults to eps / steps so
            that ``steps`` steps can just reach the border of the ball.

    Returns:
        Adversarial images within the eps-ball around ``x`` and within [0, 1].
    """
    if step_size is None:
        step_size = eps / steps if steps > 0 else eps
    if not (math.isfinite(step_size) and step_size >= 0):
        raise ValueError(f"step_size must be finite and non-negative, got {step_size}")
    return _linf_iterative(model, x, y, eps=eps, steps=steps, step_size=step_size)


def random_start(x: Tensor, eps: float, generator: torch.Generator | None = None) -> Tensor:
    """Uniform random point of the L_inf eps-ball around ``x``, clipped to [0, 1].

    Drawn on the CPU from ``generator`` (so the same seed gives the same start on any device)
    and written as foolbox 3.3.4 writes it (``x + rand * (2 eps) - eps``, eagerpy's
    ``uniform``), so that with the same seed both draw the same start.

    Args:
        x: clean images in [0, 1], shape (N, C, H, W).
        eps: L_inf radius on the [0, 1] scale.
        generator: source of randomness; None uses torch's global generator.

    Returns:
        Starting images, same shape/dtype/device as ``x``.
    """
    noise = torch.rand(x.shape, generator=generator, dtype=x.dtype) * (eps - (-eps)) + (-eps)
    return torch.clamp(x.detach() + noise.to(x.device), _MIN, _MAX)


def pgd(model: nn.Module, x: Tensor, y: Tensor, eps: float, steps: int = 20, step_size: float | None = None,
        *, random_init: bool = True, generator: torch.Generator | None = None,
        start: Tensor | None = None) -> Tensor:
    """Projected gradient descent on the cross-entropy, L_inf, untargeted (Madry et al.).

    Starts at a uniform random point of the eps-ball (:func:`random_start`), then runs the
    I-FGSM step: x_adv += step_size * sign(grad CE), project onto the eps-ball around ``x``,
    clip to [0, 1]. Without the random start it is :func:`ifgsm` with its own step size.

    Reference: Madry, Makelov, Schmidt, Tsipras & Vladu, "Towards Deep Learning Models
    Resistant to Adversarial Attacks", ICLR 2018. Matches foolbox's ``LinfPGD(abs_stepsize=step_size,
    steps=steps, random_start=random_init)``.

    Args:
        model: classifier mapping [0, 1] images to logits; already in eval mode.
        x: clean images in [0, 1], shape (N, C, H, W).
        y: true labels, int64, shape (N,).
        eps: L_inf budget on the [0, 1] scale.
        steps: number of iterations (PGD-20: 20).
        step_size: per-step size on the [0, 1] scale; default 2.5 * eps / steps, Madry et
            al.'s rule (their MNIST setting 0.01 for eps 0.3 over 100 steps is 2.5 eps / steps),
            so that the iterate can cross the ball and still move after a projection.
        random_init: start from a random point of the ball (True) or from ``x``.
        generator: randomness of the start (seed it for reproducible results).
        start: a start drawn beforehand (overrides ``random_init``/``generator``), e.g.
            for the whole data set at once so that results do not depend on the batching.

    Returns:
        Adversarial images within the eps-ball around ``x`` and within [0, 1].
    """
    if step_size is None:
        step_size = 2.5 * eps / steps if steps > 0 else eps
    if not (math.isfinite(step_size) and step_size >= 0):
        raise ValueError(f"step_size must be finite and non-negative, got {step_size}")
    if start is None and random_init:
        _check_inputs(x, y)  # before drawing: a bad eps or box fails here with its own message
        if not (math.isfinite(eps) and eps >= 0):
            raise ValueError(f"eps must be a finite non-negative number on the [0, 1] scale, got {eps}")
        start = random_start(x, eps, generator)
    return _linf_iterative(model, x, y, eps=eps, steps=steps, step_size=step_size, start=start)


# --------------------------------------------------------------------------- Carlini & Wagner L2


@dataclass(frozen=True)
class CWResult:
    """Output of :func:`cw_l2`.

    Attributes:
        adversarial: (N, C, H, W) smallest-L2 adversarial found per sample; the
            clean image where none was found.
        success: bool (N,), whether an adversarial was found.
        l2: float (N,), L2 norm of ``adversarial - x``; 0 where ``success`` is False.
    """

    adversarial: Tensor
    success: Tensor
    l2: Tensor


def _to_attack_space(x: Tensor) -> Tensor:
    """Map [0, 1] images to tanh space (foolbox ``_to_attack_space``).

    The 0.999999 shrink keeps arctanh finite for pixels exactly at 0 or 1;
    arctanh is written as foolbox/eagerpy write it (via log1p) so that the
    starting point is bit-identical.
    """
    a = (_MIN + _MAX) / 2
    b = (_MAX - _MIN) / 2
    x = (x - a) / b
    x = x * 0.999999
    return 0.5 * (torch.log1p(x) - torch.log1p(-x))


def _to_model_space(w: Tensor) -> Tensor:
    """Inverse of :func:`_to_attack_space`: tanh keeps every iterate inside (0, 1)."""
    a = (_MIN + _MAX) / 2
    b = (_MAX - _MIN) / 2
    return w.tanh() * b + a


def cw_l2(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    binary_search_steps: int = 5,
    steps: int = 1000,
    stepsize: float = 0.01,
    confidence: float = 0.0,
    initial_const: float = 1e-3,
    abort_early: bool = True,
    progress: bool = False,
) -> CWResult:
    """Carlini & Wagner L2 attack, untargeted.

    Minimises, per sample, ``||x' - x||_2^2 + consts * max(z_y - max_{j!=y} z_j + confidence, 0)``
    with x' = (tanh(w + delta) + 1) / 2, optimising ``delta`` with Adam on the
    sum of the per-sample losses. ``consts`` is tuned per sample by binary
    search (exponential growth x10 until a first success). The smallest-L2
    successful iterate over all steps and all binary-search rounds is kept.

    Reference: Carlini & Wagner, "Towards Evaluating the Robustness of Neural
    Networks", IEEE S&P 2017. The algorithm mirrors foolbox 3.3.4's
    ``L2CarliniWagnerAttack`` step for step (same tanh mapping, same Adam with
    foolbox's bias-correction and epsilon placement, same abort-early rule,
    same const updates, same success test on the logits of the current
    iterate), so both give the same results up to floating-point noise.
    Differences: (1) failed samples return the clean image (foolbox: zeros);
    (2) only the input gradient is computed (foolbox also fills parameter grads).

    Note the abort-early test uses the loss summed over the batch, so (as in
    foolbox) results depend slightly on how the data is batched. Samples already
    misclassified count as successes with a ~1e-6 L2 (the tanh round trip).

    Args:
        model: classifier mapping [0, 1] images to logits; already in eval mode.
        x: clean images in [0, 1], shape (N, C, H, W).
        y: true labels, int64, shape (N,).
        binary_search_steps: rounds of the binary search over ``consts`` (paper: 5).
        steps: Adam iterations per round (paper: 1000).
        stepsize: Adam learning rate.
        confidence: required logit margin kappa.
        initial_const: starting value of ``consts``.
        abort_early: stop a round when the loss has not decreased by 0.01%
            since the previous check (checks every ceil(steps / 10) steps).
        progress: show a tqdm bar over binary-search rounds.

    Returns:
        :class:`CWResult` with adversarial images, success mask and L2 norms.
    """
    _check_inputs(x, y)
    if binary_search_steps < 1 or steps < 1:
        raise ValueError(f"binary_search_steps and steps must be >= 1, got {binary_search_steps}, {steps}")
    N = x.shape[0]
    device = x.device
    x = x.detach().clone()  # a normal (non-inference) tensor, safe to use with autograd
    y = y.to(device)
    rows = torch.arange(N, device=device)

    x_attack = _to_attack_space(x)
    # The loss measures distance to the tanh round-trip of x (as foolbox does), so
    # that delta = 0 has exactly zero distortion loss.
    reconstructed_x = _to_model_space(x_attack)

    # Binary-search state in float64, like foolbox's numpy arrays; cast to
    # float32 only when entering the loss.
    consts = torch.full((N,), float(initial_const), dtype=torch.float64, device=device)
    lower_bounds = torch.zeros(N, dtype=torch.float64, device=device)
    upper_bounds = torch.full((N,), math.inf, dtype=torch.float64, device=device)

    # Start from the clean image so failed samples return it (foolbox: zeros).
    best_advs = x.clone()
    best_advs_norms = torch.full((N,), math.inf, dtype=x.dtype, device=device)

    beta1, beta2, adam_eps = 0.9, 0.999, 1e-8  # foolbox AdamOptimizer defaults
    check_every = math.ceil(steps / 10)

    rounds = range(binary_search_steps)
    if progress:
        from tqdm.auto import tqdm

        rounds = tqdm(rounds, desc="C&W binary search", leave=False)

    for binary_search_step in rounds:
        if binary_search_step == binary_search_steps - 1 and binary_search_steps >= 10:
            # foolbox: with many rounds, the last one repeats the search at the best
            # (smallest successful) const found so far.
            consts = torch.clamp(upper_bounds, max=1e10)

        delta = torch.zeros_like(x_attack)
        # Fresh Adam state per round, as foolbox creates a new optimizer each round.
        m = torch.zeros_like(x_attack)
        v = torch.zeros_like(x_attack)
        found_advs = torch.zeros(N, dtype=torch.bool, device=device)
        loss_at_previous_check = math.inf
        consts_ = consts.to(x.dtype)

        for step in range(steps):
            delta.requires_grad_(True)
            with torch.enable_grad():
                perturbed = _to_model_space(x_attack + delta)
                logits = model(perturbed)
                _check_logits(logits, N)

                with torch.no_grad():
                    # Strongest competing class; equivalent to foolbox's
                    # argmax(logits - onehot(y) * inf).
                    other = logits.detach().clone()
                    other[rows, y] = -math.inf
                    best_other = other.argmax(dim=1)

                is_adv_loss = logits[rows, y] - logits[rows, best_other]
                is_adv_loss = is_adv_loss + confidence
                # torch.maximum (not clamp) to reproduce foolbox's gradient at the kink.
                is_adv_loss = torch.maximum(is_adv_loss, torch.zeros_like(is_adv_loss))
                is_adv_loss = is_adv_loss * consts_
                squared_norms = (perturbed - reconstructed_x).flatten(1).square().sum(dim=1)
                assert is_adv_loss.shape == squared_norms.shape == (N,)
                # Per-sample losses are summed: samples do not interact through the
                # gradient, only through the abort-early test.
                loss = is_adv_loss.sum() + squared_norms.sum()
                (gradient,) = torch.autograd.grad(loss, delta)

            with torch.no_grad():
                delta = delta.detach()
                perturbed = perturbed.detach()
                logits = logits.detach()

                # foolbox's AdamOptimizer, same operation order (its epsilon is added
                # to sqrt(v_hat), unlike torch.optim.Adam).
                t = step + 1
                m = beta1 * m + (1 - beta1) * gradient
                v = beta2 * v + (1 - beta2) * gradient**2
                bias_correction_1 = 1 - beta1**t
                bias_correction_2 = 1 - beta2**t
                m_hat = m / bias_correction_1
                v_hat = v / bias_correction_2
                delta = delta - stepsize * m_hat / (torch.sqrt(v_hat) + adam_eps)

                if abort_early and step % check_every == 0:
                    # The only host sync per tenth of the round. Compare as foolbox
                    # does (float32 loss tensor vs Python float).
                    if not bool(loss.detach() <= 0.9999 * loss_at_previous_check):
                        break  # no progress: stop Adam (skips this step's bookkeeping, like foolbox)
                    loss_at_previous_check = loss.item()

                # Success test reuses the logits of this step's forward pass instead of
                # a second model call (they belong to `perturbed`, the pre-update iterate).
                if confidence != 0:
                    logits = logits.clone()
                    logits[rows, y] += confidence
                found_advs_iter = logits.argmax(dim=1) != y
                found_advs |= found_advs_iter

                norms = (perturbed - x).flatten(1).square().sum(dim=1).sqrt()
                new_best = (norms < best_advs_norms) & found_advs_iter
                best_advs = torch.where(new_best.view(-1, *([1] * (x.ndim - 1))), perturbed, best_advs)
                best_advs_norms = torch.where(new_best, norms, best_advs_norms)

        # Binary search on consts: success -> shrink from above, failure -> raise
        # from below; until a first success, grow exponentially.
        upper_bounds = torch.where(found_advs, consts, upper_bounds)
        lower_bounds = torch.where(found_advs, lower_bounds, consts)
        consts_exponential_search = consts * 10
        consts_binary_search = (lower_bounds + upper_bounds) / 2
        consts = torch.where(torch.isinf(upper_bounds), consts_exponential_search, consts_binary_search)

        if progress:
            rounds.set_postfix(success=f"{torch.isfinite(best_advs_norms).float().mean().item():.3f}")

    success = torch.isfinite(best_advs_norms)
    l2 = torch.where(success, best_advs_norms, torch.zeros_like(best_advs_norms))
    assert best_advs.shape == x.shape and success.shape == l2.shape == (N,)
    return CWResult(adversarial=best_advs.detach(), success=success, l2=l2)


# --------------------------------------------------------------------------- utilities


def to_uint8(x: Tensor) -> Tensor:
    """Quantise [0, 1] float images to uint8 (round(x * 255), clamped).

    Adversarial sets are stored as uint8 (like the clean PNG/JPEG data), so the
    evaluated perturbation is the quantised one.

    Args:
        x: float images, nominally in [0, 1].

    Returns:
        uint8 tensor of the same shape and device.
    """
    return torch.round(x.detach() * 255).clamp_(0, 255).to(torch.uint8)


def _model_device(model: nn.Module, fallback: torch.device) -> torch.device:
    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError):
        return fallback


def success_rate(model: nn.Module, x_adv: Tensor, y: Tensor, batch_size: int = 256) -> float:
    """Fraction of samples the model misclassifies (untargeted attack success).

    Runs under ``torch.inference_mode`` in batches of ``batch_size``; uint8
    inputs are converted to [0, 1] floats first.

    Reference: standard untargeted success criterion (argmax != label), as in
    foolbox's ``Misclassification`` and Xue et al.'s reported attack success.

    Args:
        model: classifier mapping [0, 1] images to logits; already in eval mode.
        x_adv: adversarial images (float in [0, 1] or uint8), shape (N, C, H, W).
        y: true labels, shape (N,).
        batch_size: evaluation batch size.

    Returns:
        Misclassified fraction in [0, 1] (0.0 for an empty set).
    """
    assert y.shape == (x_adv.shape[0],), f"labels {tuple(y.shape)} do not match inputs {tuple(x_adv.shape)}"
    n = x_adv.shape[0]
    if n == 0:
        return 0.0
    device = _model_device(model, x_adv.device)
    wrong = 0
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            xb = x_adv[start : start + batch_size].to(device)
            if xb.dtype == torch.uint8:
                xb = xb.float() / 255
            logits = model(xb)
            _check_logits(logits, xb.shape[0])
            wrong += int((logits.argmax(dim=1) != y[start : start + batch_size].to(device)).sum().item())
    return wrong / n


# --------------------------------------------------------------------------- dispatcher

_METHOD_ARGS: dict[str, set[str]] = {
    "fgsm": {"eps"},
    "ifgsm": {"eps", "steps", "stepsize"},
    "pgd": {"eps", "steps", "stepsize", "random_init", "seed"},
    "cw": {"steps", "binary_search_steps", "stepsize", "confidence", "initial_const", "abort_early"},
}


def run_attack(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    method: str,
    *,
    eps: float | None = None,
    steps: int | None = None,
    binary_search_steps: int | None = None,
    stepsize: float | None = None,
    confidence: float | None = None,
    initial_const: float | None = None,
    abort_early: bool | None = None,
    random_init: bool | None = None,
    seed: int | None = None,
    batch_size: int = 256,
    progress: bool = False,
) -> tuple[Tensor, dict]:
    """Run one attack over a dataset in batches (entry point for the CLI).

    Methods and the arguments they accept (None = use the function default):

    * ``"fgsm"``  (Goodfellow et al. 2015): ``eps`` (required).
    * ``"ifgsm"`` (Kurakin et al. 2017): ``eps`` (required), ``steps`` (10),
      ``stepsize`` (eps / steps), passed to :func:`ifgsm` as ``step_size``.
    * ``"pgd"``   (Madry et al. 2018): ``eps`` (required), ``steps`` (20),
      ``stepsize`` (2.5 * eps / steps), ``random_init`` (True), ``seed`` (0): the random
      starts of the whole set are drawn at once from a generator seeded with ``seed``,
      so results are reproducible and do not depend on ``batch_size``.
    * ``"cw"``    (Carlini & Wagner 2017): ``binary_search_steps`` (5),
      ``steps`` (1000), ``stepsize`` (0.01), ``confidence`` (0),
      ``initial_const`` (1e-3), ``abort_early`` (True).

    Passing an argument the method does not use is an error (it would be
    silently ignored otherwise). ``eps`` and ``stepsize`` are on the [0, 1]
    scale; the CLI converts from /255.

    Each batch is moved to the model's device; the result is returned on the
    device of ``x``.

    Args:
        model: surrogate classifier (eval mode), [0, 1] images -> logits.
        x: clean float images in [0, 1], shape (N, C, H, W).
        y: labels, shape (N,).
        method: one of "fgsm", "ifgsm", "pgd", "cw".
        eps, steps, binary_search_steps, stepsize, confidence, initial_const,
            abort_early, random_init, seed: attack hyper-parameters, see above.
        batch_size: attack batch size (C&W's abort-early test is per batch).
        progress: show tqdm bars.

    Returns:
        (adversarial float images in [0, 1], stats) where stats has
        ``method``, ``n``, the effective hyper-parameters, ``success_rate_float`` (model error on the float
        adversarials), ``success_rate_uint8`` (after :func:`to_uint8`
        quantisation), ``mean_linf``, ``mean_l2`` (mean L2 of the float
        perturbation, for C&W over successful samples only) and, for C&W,
        ``cw_success_rate`` (the attack's own success bookkeeping).

    Raises:
        ValueError: unknown method, missing required argument, argument not
            used by the method, or invalid values.
    """
    if method not in _METHOD_ARGS:
        raise ValueError(f"unknown attack method {method!r}; expected one of {sorted(_METHOD_ARGS)}")
    given = {
        "eps": eps,
        "steps": steps,
        "binary_search_steps": binary_search_steps,
        "stepsize": stepsize,
        "confidence": confidence,
        "initial_const": initial_const,
        "abort_early": abort_early,
        "random_init": random_init,
        "seed": seed,
    }
    unused = sorted(k for k, v in given.items() if v is not None and k not in _METHOD_ARGS[method])
    if unused:
        raise ValueError(f"method {method!r} does not take argument(s) {unused}")
    if method in ("fgsm", "ifgsm", "pgd") and eps is None:
        raise ValueError(f"method {method!r} requires eps (on the [0, 1] scale)")
    if eps is not None and not (math.isfinite(eps) and 0 < eps <= 1):
        raise ValueError(f"eps must be in (0, 1] on the [0, 1] scale, got {eps}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if y.shape != (x.shape[0],):
        raise ValueError(f"labels of shape {tuple(y.shape)} do not match {x.shape[0]} images")

    cw_kwargs = {k: v for k, v in given.items() if v is not None and k not in ("eps", "random_init", "seed")}
    # Effective hyper-parameters (defaults filled in) so the stats are self-describing.
    if method == "fgsm":
        params: dict = {"eps": eps}
    elif method == "ifgsm":
        ifgsm_steps = 10 if steps is None else steps
        params = {"eps": eps, "steps": ifgsm_steps, "stepsize": eps / ifgsm_steps if stepsize is None else stepsize}
    elif method == "pgd":
        pgd_steps = 20 if steps is None else steps
        params = {"eps": eps, "steps": pgd_steps,
                  "stepsize": 2.5 * eps / pgd_steps if stepsize is None else stepsize,
                  "random_init": True if random_init is None else random_init, "seed": 0 if seed is None else seed}
    else:
        params = {
            "binary_search_steps": 5,
            "steps": 1000,
            "stepsize": 0.01,
            "confidence": 0.0,
            "initial_const": 1e-3,
            "abort_early": True,
            **cw_kwargs,
        }
    device = _model_device(model, x.device)
    n = x.shape[0]
    advs: list[Tensor] = []
    cw_success: list[Tensor] = []
    cw_l2s: list[Tensor] = []
    pgd_starts = None
    if method == "pgd" and params["random_init"]:
        pgd_starts = random_start(x, eps, torch.Generator().manual_seed(params["seed"]))

    starts = range(0, n, batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=f"{method} batches")
    for start in starts:
        xb = x[start : start + batch_size].to(device)
        yb = y[start : start + batch_size].to(device)
        if method == "fgsm":
            xa = fgsm(model, xb, yb, eps)
        elif method == "ifgsm":
            xa = ifgsm(model, xb, yb, eps, steps=params["steps"], step_size=params["stepsize"])
        elif method == "pgd":
            start_b = None if pgd_starts is None else pgd_starts[start : start + batch_size].to(device)
            xa = pgd(model, xb, yb, eps, steps=params["steps"], step_size=params["stepsize"],
                     random_init=False, start=start_b)
        else:
            res = cw_l2(model, xb, yb, progress=progress, **cw_kwargs)
            xa = res.adversarial
            cw_success.append(res.success.cpu())
            cw_l2s.append(res.l2.cpu())
        advs.append(xa.to(x.device))

    x_adv = torch.cat(advs) if advs else x.clone()
    with torch.no_grad():
        diff = (x_adv - x).flatten(1)
        linf = diff.abs().amax(dim=1) if n else diff.new_zeros(0)
        l2 = diff.norm(dim=1)
    stats: dict = {
        "method": method,
        "n": n,
        **params,
        "success_rate_float": success_rate(model, x_adv, y, batch_size=batch_size),
        "success_rate_uint8": success_rate(model, to_uint8(x_adv), y, batch_size=batch_size),
        "mean_linf": float(linf.mean()) if n else 0.0,
    }
    if method == "cw":
        success = torch.cat(cw_success) if cw_success else torch.zeros(0, dtype=torch.bool)
        l2s = torch.cat(cw_l2s) if cw_l2s else torch.zeros(0)
        stats["cw_success_rate"] = float(success.float().mean()) if n else 0.0
        stats["mean_l2"] = float(l2s[success].mean()) if bool(success.any()) else float("nan")
    else:
        stats["mean_l2"] = float(l2.mean()) if n else 0.0
    return x_adv, stats
