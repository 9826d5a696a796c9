"""Each multi-task method pinned on toy gradients against its closed form."""

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from polymodal.errors import ConfigError
from polymodal.mtl import BALANCERS, build_balancer
from polymodal.mtl.cagrad import cagrad_objective, cagrad_weights
from polymodal.mtl.imtl import imtl_weights
from polymodal.mtl.mgda import min_norm_weights


def linear_losses(grads: list[list[float]]) -> tuple[dict[str, torch.Tensor], nn.Parameter]:
    """Losses L_t = g_t·θ, so ∇_θ L_t = g_t exactly."""
    theta = nn.Parameter(torch.zeros(len(grads[0])))
    return {f"t{i}": torch.tensor(g, dtype=torch.float32) @ theta for i, g in enumerate(grads)}, theta


def shared_update(name: str, grads: list[list[float]], step: int = 0, **options) -> torch.Tensor:
    losses, theta = linear_losses(grads)
    bal = build_balancer(name, list(losses), options=options)
    bal.backward(losses, [theta], step)
    return theta.grad


def test_pcgrad_two_conflicting_2d_gradients():
    # g1·g2 = -1 < 0: g1 -> g1 - (g1·g2/|g2|²) g2 = (.5, .5); g2 -> g2 - (g2·g1/|g1|²) g1 = (0, 1)
    assert torch.allclose(shared_update("pcgrad", [[1, 0], [-1, 1]]), torch.tensor([0.5, 1.5]))
    # no conflict: plain sum
    assert torch.allclose(shared_update("pcgrad", [[1, 0], [1, 1]]), torch.tensor([2.0, 1.0]))


def test_pcgrad_three_tasks_matches_explicit_projection():
    g = torch.tensor([[1.0, 0.2, 0.0], [-0.8, 1.0, 0.1], [0.1, -0.9, 1.0]])
    bal = BALANCERS.create("pcgrad", tasks=["a", "b", "c"], seed=3)
    gen = bal.generator(5)
    out = torch.zeros(3)
    for i in range(3):  # the official algorithm on explicit vectors, with the same random order
        gi = g[i].clone()
        for j in torch.randperm(3, generator=gen).tolist():
            if j != i and gi @ g[j] < 0:
                gi = gi - (gi @ g[j]) / (g[j] @ g[j]) * g[j]
        out += gi
    losses, theta = linear_losses(g.tolist())
    build_balancer("pcgrad", list(losses), seed=3).backward(losses, [theta], 5)
    assert torch.allclose(theta.grad, out)


def test_mgda_min_norm_point_of_two_vectors():
    # hull of (2,0) and (0,1): γ = (g2·g2 − g1·g2)/‖g1−g2‖² = 1/5 -> point (0.4, 0.8), orthogonal to g1−g2
    grad = shared_update("mgda", [[2, 0], [0, 1]], ub=False)
    assert torch.allclose(grad, torch.tensor([0.4, 0.8]))
    assert abs(float(grad @ torch.tensor([2.0, -1.0]))) < 1e-6
    # one gradient inside the other's direction: the shorter one is the min-norm point
    assert torch.allclose(shared_update("mgda", [[1, 0], [3, 0]], ub=False), torch.tensor([1.0, 0.0]))


def test_mgda_frank_wolfe_matches_grid_for_three_vectors():
    g = np.array([[1.0, 0.3], [-0.5, 1.0], [0.2, -1.0]])
    gram = g @ g.T
    w = min_norm_weights(gram)
    best = min(
        (a * g[0] + b * g[1] + (1 - a - b) * g[2]) @ (a * g[0] + b * g[1] + (1 - a - b) * g[2])
        for a, b in itertools.product(np.linspace(0, 1, 401), repeat=2)
        if a + b <= 1
    )
    assert abs(w.sum() - 1) < 1e-9 and (w >= 0).all()
    assert w @ gram @ w <= best + 1e-4


def test_mgda_ub_uses_representation_gradients():
    torch.manual_seed(0)
    trunk, h1, h2 = nn.Linear(3, 2), nn.Linear(2, 1), nn.Linear(2, 1)
    x = torch.randn(4, 3)
    z = trunk(x)
    losses = {"a": h1(z).pow(2).mean(), "b": h2(z).pow(2).mean()}
    za, zb = (torch.autograd.grad(v, z, retain_graph=True)[0].flatten() for v in losses.values())
    gram = torch.stack([za, zb]) @ torch.stack([za, zb]).T
    expected = min_norm_weights(gram.double().numpy())
    shared, heads = list(trunk.parameters()), [*h1.parameters(), *h2.parameters()]
    bal = build_balancer("mgda", ["a", "b"])
    bal.backward(losses, shared, 0, heads=heads, features=z)
    assert np.allclose(bal.last_weights.numpy(), expected, atol=1e-6)
    with pytest.raises(ConfigError, match="features"):
        z = trunk(x)
        bal.backward({"a": h1(z).sum(), "b": h2(z).sum()}, shared, 0, heads=heads)


def test_cagrad_closed_form_orthogonal_and_grid():
    c = 0.5
    # orthogonal unit gradients: w = (½, ½) by symmetry, update = g0 (1 + c) / (1 + c²)
    expected = torch.tensor([0.5, 0.5]) * (1 + c) / (1 + c**2)
    assert torch.allclose(shared_update("cagrad", [[1, 0], [0, 1]], c=c), expected, atol=1e-4)
    # c = 0 is plain gradient descent on the mean loss
    assert torch.allclose(shared_update("cagrad", [[1, 0], [-1, 2]], c=0.0), torch.tensor([0.0, 1.0]))
    # the inner problem: the solver's objective is within 1e-5 of a fine grid over the simplex
    g = np.array([[1.0, 0.0], [-0.7, 1.2]])
    gram = g @ g.T
    scale = np.trace(gram) / 2
    from polymodal.mtl import cagrad as mod

    grid = min(cagrad_objective(np.array([a, 1 - a]), gram / scale, c) for a in np.linspace(0, 1, 20001))
    w = np.full(2, 0.5)
    for _ in range(400):  # the solver's own iterate, re-run here to read its w
        gn = np.sqrt(w @ (gram / scale) @ w)
        grad = (gram / scale) @ np.full(2, 0.5) + c * np.sqrt(
            np.full(2, 0.5) @ (gram / scale) @ np.full(2, 0.5)
        ) * ((gram / scale) @ w) / gn
        w = mod.project_simplex(w - grad / np.linalg.norm(gram / scale, 2))
    assert cagrad_objective(w, gram / scale, c) <= grid + 1e-5
    weights = cagrad_weights(gram, c)
    g0 = g.mean(0)
    gw = w @ g
    update = (g0 + c * np.linalg.norm(g0) / np.linalg.norm(gw) * gw) / (1 + c**2)
    assert np.allclose(weights @ g, update, atol=1e-3)


def test_imtl_g_equal_projections_and_closed_form():
    # g1=(1,0), g2=(0,2): α g1 + (1−α) g2 has equal projections on u1, u2 when α = 2(1−α): α = 2/3
    assert torch.allclose(shared_update("imtl_g", [[1, 0], [0, 2]]), torch.tensor([2 / 3, 2 / 3]))
    g = torch.tensor([[1.0, 0.5, -0.2], [0.3, -2.0, 0.4], [-0.5, 0.1, 3.0]], dtype=torch.float64)
    w = imtl_weights(g @ g.T)
    update = w @ g
    proj = update @ (g / g.norm(dim=1, keepdim=True)).T
    assert torch.allclose(proj, proj[0].expand(3), atol=1e-9) and abs(float(w.sum()) - 1) < 1e-9


def test_uncertainty_weighting_loss_formula():
    bal = build_balancer("uncertainty", ["a", "b"])
    with torch.no_grad():
        bal.log_var.copy_(torch.tensor([0.5, -1.0]))
    la, lb = torch.tensor(2.0, requires_grad=True), torch.tensor(3.0, requires_grad=True)
    total = bal.backward({"a": la, "b": lb}, [], 0)
    expected = np.exp(-0.5) * 2 + 0.25 + np.exp(1.0) * 3 - 0.5
    assert abs(float(total) - expected) < 1e-5
    # d/ds_t = −exp(−s_t) L_t + ½ ; d/dL_t = exp(−s_t)
    assert torch.allclose(
        bal.log_var.grad, torch.tensor([-np.exp(-0.5) * 2 + 0.5, -np.exp(1.0) * 3 + 0.5]).float()
    )
    assert abs(float(la.grad) - np.exp(-0.5)) < 1e-6
    # one task present (method two): only its s gets a gradient
    bal.log_var.grad = None
    bal.backward({"b": torch.tensor(1.0, requires_grad=True)}, [], 1)
    assert bal.log_var.grad[0] == 0 and bal.log_var.grad[1] != 0


def test_dwa_weights_from_loss_history():
    bal = build_balancer("dwa", ["a", "b"], options={"temperature": 2.0, "period": 2})
    history = [(4.0, 2.0), (4.0, 2.0), (2.0, 2.0), (2.0, 2.0)]  # period means: (4, 2) then (2, 2)
    for step, (a, b) in enumerate(history):
        la, lb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
        bal.backward({"a": la, "b": lb}, [], step)
        assert float(la.grad) == 1.0  # first two periods: equal weights
    r = torch.tensor([2.0 / 4.0, 2.0 / 2.0])
    expected = 2 * torch.softmax(r / 2.0, 0)
    assert torch.allclose(bal.weights(4), expected)
    la, lb = torch.tensor(1.0, requires_grad=True), torch.tensor(1.0, requires_grad=True)
    bal.backward({"a": la, "b": lb}, [], 4)
    assert torch.allclose(torch.stack([la.grad, lb.grad]), expected)


def test_gradnorm_update_direction_and_renormalisation():
    w_last = nn.Parameter(torch.zeros(2, 2))
    x = torch.tensor([1.0, 0.0])
    losses = {"a": 3.0 * (w_last @ x).sum() + 2.0, "b": 1.0 * (w_last @ x).sum() + 2.0}
    # ‖∇_W L_a‖ = 3·‖(1,1)ᵀ(1,0)‖ = 3√2, ‖∇_W L_b‖ = √2; first step: r = 1 so target = mean of w_t n_t
    bal = build_balancer("gradnorm", ["a", "b"], options={"alpha": 1.5})
    with torch.no_grad():
        bal.weight.copy_(torch.tensor([3.0, 1.0]))  # renormalised to sum T = 2 -> (1.5, 0.5)
    bal.backward(losses, [w_last], 0)
    assert torch.allclose(bal.weight.detach(), torch.tensor([1.5, 0.5]))
    n = torch.tensor([3.0, 1.0]) * np.sqrt(2)
    g = torch.tensor([1.5, 0.5]) * n  # (4.5√2, 0.5√2): task a is above the mean, b below
    assert torch.allclose(bal.weight.grad, torch.sign(g - g.mean()) * n)  # = (+n_a, −n_b)
    assert bal.weight.grad[0] > 0 > bal.weight.grad[1]
    # model gradient is that of Σ w_t L_t
    assert torch.allclose(w_last.grad, (1.5 * 3 + 0.5 * 1) * torch.tensor([[1.0, 0.0], [1.0, 0.0]]))


def test_rlw_weights_sum_to_one_and_are_random_but_replayable():
    bal = build_balancer("rlw", ["a", "b", "c"], seed=1)
    ws = [bal.weights(s) for s in range(5)]
    assert all(abs(float(w.sum()) - 1) < 1e-6 and (w > 0).all() for w in ws)
    assert not torch.allclose(ws[0], ws[1])
    assert torch.equal(bal.weights(3), ws[3])


def test_recompute_every_reuses_last_weights():
    grads = [[1, 0], [-1, 1]]
    losses, theta = linear_losses(grads)
    bal = build_balancer("pcgrad", list(losses), recompute_every=3)
    bal.backward(losses, [theta], 0)
    w0 = bal.last_weights.clone()
    with torch.no_grad():
        bal.last_weights.copy_(torch.tensor([2.0, -1.0]))  # any stored weights are what a reuse step applies
    losses, theta = linear_losses(grads)
    bal.backward(losses, [theta], 1)
    assert torch.allclose(theta.grad, 2 * torch.tensor([1.0, 0]) - torch.tensor([-1.0, 1]))
    assert torch.allclose(w0, torch.tensor([2.0, 1.5]))  # (0.5, 1.5) = 2 g1 + 1.5 g2


@pytest.mark.parametrize("name", ["pcgrad", "cagrad", "imtl_g", "mgda"])
def test_gradients_never_leave_the_device(name, host_copies):
    """Only the T×T Gram matrix may be moved to the host; no gradient ever is."""
    moved = host_copies
    torch.manual_seed(0)
    trunk, heads = nn.Linear(50, 40), nn.ModuleList([nn.Linear(40, 3) for _ in range(3)])
    z = trunk(torch.randn(8, 50))
    losses = {f"t{i}": h(z).pow(2).mean() for i, h in enumerate(heads)}
    bal = build_balancer(name, list(losses), options={"ub": False} if name == "mgda" else {})
    bal.backward(losses, list(trunk.parameters()), 0, heads=list(heads.parameters()))
    assert trunk.weight.grad is not None and all(p.grad is not None for p in heads.parameters())
    assert max(moved, default=0) <= 9, f"{name} moved a tensor of {max(moved)} elements to the host"


def test_build_errors_are_one_clear_line():
    with pytest.raises(ConfigError, match="one_task"):
        build_balancer("pcgrad", ["a", "b"], update="one_task")
    with pytest.raises(ConfigError, match="not an option of 'cagrad'; allowed: recompute_every, c"):
        build_balancer("cagrad", ["a", "b"], options={"alpha": 1})
    with pytest.raises(ConfigError, match="only gradient methods"):
        build_balancer("dwa", ["a", "b"], recompute_every=2)
    with pytest.raises(ConfigError, match="shared"):
        build_balancer("gradnorm", ["a", "b"], has_shared=False)
    with pytest.raises(ConfigError, match="unknown multi-task weighting 'nope'"):
        build_balancer("nope", ["a"])
    build_balancer("uncertainty", ["a", "b"], update="one_task")  # works with one task per step
