"""The multi-task solvers against exact references, and the newer methods against their papers.

MGDA and CAGrad are checked against independent brute-force solves (every support of the simplex,
its KKT system solved directly, the best feasible candidate kept) on ill-conditioned, rank-deficient
and badly scaled T = 3, 4 problems. Nash-MTL, UPGrad, Aligned-MTL and FAMO are checked against their
papers' closed forms / optimality conditions and against values hard-coded from the reference
implementations (the call that produced each is in a comment).
"""

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from polymodal.errors import ConfigError
from polymodal.mtl import build_balancer
from polymodal.mtl.aligned_mtl import balance_matrix
from polymodal.mtl.cagrad import cagrad_weights
from polymodal.mtl.mgda import min_norm_weights
from polymodal.mtl.nash_mtl import nash_weights
from polymodal.mtl.upgrad import project_weights, upgrad_weights

# --- independent references ------------------------------------------------------------------------


def brute_min_norm(gram: np.ndarray) -> np.ndarray:
    """argmin_{α∈Δ} αᵀGα: on each support S solve [G_SS 1; 1ᵀ 0][α; λ] = [0; 1], keep α ≥ 0, take the best."""
    t = len(gram)
    g = gram / np.max(np.diag(gram))
    best, best_w = np.inf, None
    for k in range(1, t + 1):
        for s in map(list, itertools.combinations(range(t), k)):
            a = np.zeros((k + 1, k + 1))
            a[:k, :k], a[:k, k], a[k, :k] = g[np.ix_(s, s)], 1.0, 1.0
            sol = np.linalg.lstsq(a, np.r_[np.zeros(k), 1.0], rcond=None)[0][:k]
            if sol.min() < -1e-12 or sol.sum() <= 0:
                continue
            w = np.zeros(t)
            w[s] = np.clip(sol, 0, None) / np.clip(sol, 0, None).sum()
            if w @ g @ w < best:
                best, best_w = w @ g @ w, w
    return best_w


def brute_cagrad(gram: np.ndarray, c: float) -> np.ndarray:
    """CAGrad's update weights. On a support S the dual's KKT conditions b_S + ρ G_SS w/‖g_w‖ = μ1
    give u = G_SS⁻¹(μ1 − b_S) with uᵀG_SS u = ρ² (a quadratic in μ) and w = u/1ᵀu; the best feasible
    candidate is the optimum (b = G·1/T, ρ = c‖g0‖)."""
    t = len(gram)
    g = gram / (np.trace(gram) / t)
    mean = np.full(t, 1 / t)
    b = g @ mean
    rho = c * np.sqrt(mean @ b)
    best, best_w = np.inf, None
    for k in range(1, t + 1):
        for s in map(list, itertools.combinations(range(t), k)):
            gs = g[np.ix_(s, s)]
            if np.linalg.cond(gs) > 1e13:
                continue
            i1, ib = np.linalg.solve(gs, np.ones(k)), np.linalg.solve(gs, b[s])
            qa, qb, qc = i1.sum(), -2 * ib.sum(), b[s] @ ib - rho**2
            if qb * qb < 4 * qa * qc:
                continue
            for mu in np.roots([qa, qb, qc]).real:
                u = mu * i1 - ib
                if u.sum() <= 0 or (u / u.sum()).min() < -1e-12:
                    continue
                w = np.zeros(t)
                w[s] = np.clip(u / u.sum(), 0, None)
                f = w @ b + rho * np.sqrt(w @ g @ w)
                if f < best:
                    best, best_w = f, w
    return (mean + rho / np.sqrt(best_w @ g @ best_w) * best_w) / (1 + c**2)


def solver_cases() -> list[tuple[str, np.ndarray]]:
    """(name, J), T = 3 and 4: ill-conditioned (cond(G) ≥ 1e4), rank-deficient and badly scaled."""
    out = []
    for t in (3, 4):
        rng = np.random.default_rng(100 + t)
        near = rng.normal(size=8) + 1e-3 * rng.normal(size=(t, 8))
        flip = np.where(np.arange(t) == t - 1, -1.0, 1.0)[:, None]
        out.append((f"near-parallel-flipped-T{t}", near * flip * np.logspace(-1, 1, t)[:, None]))
        out.append((f"near-parallel-T{t}", near))
        conf = rng.normal(size=(t, 8))
        conf[1:] = -0.9 * conf[0] + 3e-3 * rng.normal(size=(t - 1, 8))
        out.append((f"conflicting-illcond-T{t}", conf))
        dup = rng.normal(size=(t, 6))
        dup[-1] = dup[0]
        out.append((f"duplicate-T{t}", dup))
        out.append((f"rank2-T{t}", np.abs(rng.normal(size=(t, 2))) @ rng.normal(size=(2, 6))))
        out.append((f"scaled-T{t}", rng.normal(size=(t, 6)) * np.logspace(-3, 3, t)[:, None]))
        sc = rng.normal(size=(t, 6))
        sc[1] = -sc[0] + 0.3 * sc[1]
        out.append((f"scaled-conflicting-T{t}", sc * np.logspace(3, -2, t)[:, None]))
    for t, s in ((3, 4), (3, 10), (4, 0), (4, 5), (4, 7)):  # CAGrad optima with two-task supports
        rng = np.random.default_rng(200 + 10 * t + s)
        j = rng.normal(size=(t, 6))
        j[1:] -= 0.7 * j[0]
        out.append((f"scaled-interior-T{t}-{s}", j * np.logspace(-2, 2, t)[rng.permutation(t)][:, None]))
    return out


CASES = solver_cases()


def test_cases_are_hard():
    conds = {}
    for name, j in CASES:
        ev = np.linalg.eigvalsh(j @ j.T)
        conds[name] = ev.max() / max(ev.min(), 1e-300)
    assert all(c >= 1e4 for c in conds.values()), conds
    assert {len(j) for _, j in CASES} == {3, 4}
    assert any(np.linalg.matrix_rank(j) < len(j) for _, j in CASES)


# --- MGDA / CAGrad -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name,j", CASES, ids=[n for n, _ in CASES])
@pytest.mark.parametrize("normalize", [False, True])
def test_mgda_min_norm_point_is_exact(name, j, normalize):
    if normalize:  # MGDA's normalize: l2
        j = j / np.linalg.norm(j, axis=1, keepdims=True)
    gram = j @ j.T
    w, ref = min_norm_weights(gram), brute_min_norm(gram)
    assert abs(w.sum() - 1) < 1e-12 and w.min() >= 0
    point, exact = w @ j, ref @ j
    assert np.linalg.norm(point - exact) <= 1e-4 * np.linalg.norm(exact)
    # KKT of the min-norm point p: g_t·p ≥ ‖p‖² for every t (to the Gram matrix's precision)
    assert (gram @ w >= w @ gram @ w - 1e-9 * np.abs(gram).max()).all()


@pytest.mark.parametrize("name,j", CASES, ids=[n for n, _ in CASES])
@pytest.mark.parametrize("c", [0.4, 0.9])
def test_cagrad_update_is_exact(name, j, c):
    gram = j @ j.T
    update, exact = cagrad_weights(gram, c) @ j, brute_cagrad(gram, c) @ j
    assert np.linalg.norm(update - exact) <= 1e-4 * np.linalg.norm(exact)


def test_mgda_and_cagrad_balancers_apply_the_exact_weights():
    name, j = CASES[0]  # near-parallel, one flipped: Frank-Wolfe was 7× off here
    losses, theta = linear_losses(j)
    build_balancer("mgda", list(losses), options={"ub": False}).backward(losses, [theta], 0)
    exact = brute_min_norm(j @ j.T) @ j
    assert np.linalg.norm(theta.grad.double().numpy() - exact) <= 1e-3 * np.linalg.norm(exact)
    j = CASES[-1][1]
    losses, theta = linear_losses(j)
    build_balancer("cagrad", list(losses), options={"c": 0.4}).backward(losses, [theta], 0)
    exact = brute_cagrad(j @ j.T, 0.4) @ j
    assert np.linalg.norm(theta.grad.double().numpy() - exact) <= 1e-3 * np.linalg.norm(exact)


def linear_losses(j: np.ndarray, dtype=torch.float64) -> tuple[dict[str, torch.Tensor], nn.Parameter]:
    """L_t = g_t·θ, so ∇_θ L_t = g_t exactly."""
    theta = nn.Parameter(torch.zeros(j.shape[1], dtype=dtype))
    return {f"t{i}": torch.tensor(g, dtype=dtype) @ theta for i, g in enumerate(j)}, theta


# --- GradNorm ----------------------------------------------------------------------------------------


def test_gradnorm_runs_on_float64_and_matches_float32():
    torch.manual_seed(0)
    x, y = torch.randn(16, 5), torch.randn(16, 3)
    weights = {}
    for dtype in (torch.float32, torch.float64):
        torch.manual_seed(1)
        trunk, heads = nn.Linear(5, 4), nn.ModuleList(nn.Linear(4, 1) for _ in range(3))
        trunk.to(dtype), heads.to(dtype)
        bal = build_balancer("gradnorm", ["a", "b", "c"])
        params = [*trunk.parameters(), *heads.parameters()]
        opt = torch.optim.SGD([*params, *bal.parameters()], lr=0.05)
        for step in range(5):
            opt.zero_grad()
            z = torch.tanh(trunk(x.to(dtype)))
            losses = {
                t: (h(z)[:, 0] - y[:, i].to(dtype)).pow(2).mean()
                for i, (t, h) in enumerate(zip("abc", heads, strict=True))
            }
            bal.backward(losses, list(trunk.parameters()), step, heads=list(heads.parameters()))
            assert trunk.weight.grad.dtype == dtype and bal.weight.grad.dtype == torch.float32
            opt.step()
        weights[dtype] = bal.weight.detach().clone()
    assert torch.isfinite(weights[torch.float64]).all()
    assert torch.allclose(weights[torch.float32], weights[torch.float64], atol=1e-5)


# --- Nash-MTL ----------------------------------------------------------------------------------------

J3 = np.array([[1.0, 0.5, -0.2, 0.3], [0.3, -2.0, 0.4, 0.1], [-0.5, 0.1, 3.0, -0.4]])
JC = np.array([[1.0, 0.0, 0.2], [-0.9, 0.5, 0.0], [0.1, -1.0, 0.3]])  # conflicting


@pytest.mark.parametrize("seed", range(6))
def test_nash_mtl_solves_the_bargaining_fixed_point(seed):
    rng = np.random.default_rng(seed)
    t = 3 + seed % 2
    j = rng.normal(size=(t, 7)) * np.logspace(-2, 2, t)[:, None]  # badly scaled rows: same solution
    if seed >= 4:
        j[1] = -0.8 * j[0] / np.linalg.norm(j[0]) * np.linalg.norm(j[1]) + 0.2 * j[1]  # conflicting
    gram = j @ j.T
    alpha = nash_weights(gram)
    assert (alpha > 0).all()
    assert np.allclose(alpha * (gram @ alpha), 1.0, rtol=0, atol=1e-9)  # (GGᵀα)_i = 1/α_i
    assert abs(alpha @ gram @ alpha - t) < 1e-8  # hence ‖Σ α_t g_t‖² = T


def test_nash_mtl_closed_form_reference_and_max_norm():
    # orthogonal gradients: α_t = 1/‖g_t‖, the update is the sum of the unit gradients
    j = np.array([[3.0, 0.0, 0.0], [0.0, 0.5, 0.0]])
    assert np.allclose(nash_weights(j @ j.T), [1 / 3, 2.0])
    # torchjd 0.8.1: torchjd.aggregation.NashMTL(n_tasks=3, max_norm=0.0)(torch.tensor(J3, dtype=float64))
    ref = [1.1990874550429373, -0.472957735410185, 1.1250073843451764, 0.26992381737955534]
    assert np.allclose(nash_weights(J3 @ J3.T) @ J3, ref, atol=1e-5)
    # same call on JC
    ref = [-0.12821886457734755, 0.1279460264935488, 1.7225532492656537]
    assert np.allclose(nash_weights(JC @ JC.T) @ JC, ref, atol=1e-5)
    # the balancer: max_norm scales the update (norm √T at the solution) down to max_norm
    for max_norm, expected in ((1.0, 1.0), (0.0, np.sqrt(3)), (5.0, np.sqrt(3))):
        losses, theta = linear_losses(J3)
        build_balancer("nash_mtl", list(losses), options={"max_norm": max_norm}).backward(losses, [theta], 0)
        assert abs(float(theta.grad.norm()) - expected) < 1e-6
    # no bargaining solution (g_2 = −g_1): still finite weights, and a zero gradient gets weight 0
    assert np.isfinite(nash_weights(np.array([[1.0, -1.0], [-1.0, 1.0]]))).all()
    w = nash_weights(np.diag([1.0, 0.0, 4.0]))
    assert np.allclose(w, [1.0, 0.0, 0.5])


# --- UPGrad ------------------------------------------------------------------------------------------


def test_upgrad_two_task_closed_form():
    # g1=(1,0), g2=(−1,1) conflict: π(g1) = g1 − (g1·g2/‖g2‖²) g2 = (½, ½), π(g2) = g2 − (g2·g1/‖g1‖²) g1
    # = (0, 1); UPGrad is their mean (¼, ¾)
    j = np.array([[1.0, 0.0], [-1.0, 1.0]])
    assert np.allclose(upgrad_weights(j @ j.T, 0.0, 0.0) @ j, [0.25, 0.75], atol=1e-12)
    # no conflict: every gradient is already in the dual cone, UPGrad is the mean gradient
    j = np.array([[2.0, 0.0], [0.0, 1.0]])
    assert np.allclose(upgrad_weights(j @ j.T) @ j, [1.0, 0.5], atol=1e-12)


@pytest.mark.parametrize("name,j", CASES[:14], ids=[n for n, _ in CASES[:14]])
def test_upgrad_projection_kkt_and_no_conflict(name, j):
    gram = j @ j.T
    g = gram / np.trace(gram)
    t = len(g)
    for i in range(t):  # v = argmin_{v ≥ u} vᵀGv: v ≥ u, Gv ≥ 0, (Gv)_t (v − u)_t = 0
        u = np.eye(t)[i] / t
        v = project_weights(u, g)
        scale = np.sqrt(np.diag(g)).max() * np.sqrt(np.abs(v) @ np.diag(g))
        assert (v - u).min() >= -1e-12
        assert (g @ v).min() >= -1e-9 * scale
        assert np.abs((g @ v) * (v - u)).max() <= 1e-9 * scale
    w = upgrad_weights(gram, 0.0, 0.0)
    assert (g @ w).min() >= -1e-9 * np.sqrt(np.abs(w) @ np.diag(g))  # the update conflicts with no task


def test_upgrad_matches_torchjd():
    # torchjd 0.8.1: torchjd.aggregation.UPGrad()(torch.tensor(J, dtype=float64)) (norm_eps = reg_eps = 1e-4)
    ref = [0.7269439180047553, -0.33462098948024943, 1.1055351841898073, 0.1293608467243211]
    assert np.allclose(upgrad_weights(J3 @ J3.T) @ J3, ref, atol=1e-9)
    ref = [-0.03600685318684108, -0.0041738362934407025, 0.388357357953208]
    assert np.allclose(upgrad_weights(JC @ JC.T) @ JC, ref, atol=1e-9)


# --- Aligned-MTL -------------------------------------------------------------------------------------


def test_aligned_mtl_closed_form_and_condition_number_one():
    # orthogonal g1 = (3, 0), g2 = (0, 1): both rescaled to the smallest singular value 1
    j = np.array([[3.0, 0.0], [0.0, 1.0]])
    assert np.allclose(balance_matrix(j @ j.T).sum(1), [1 / 3, 1.0])
    for name, j in CASES[:14]:
        gram = j @ j.T
        b = balance_matrix(gram, "min", eps=1e-12)
        lam = np.linalg.eigvalsh(gram)
        lam = lam[lam > lam.max() * len(gram) * 1e-12]
        aligned = b @ gram @ b  # Gram matrix of the aligned rows Bᵀ J
        proj = b @ np.linalg.pinv(b)  # onto the range of G
        assert np.allclose(aligned, lam.min() * proj, atol=1e-6 * lam.min()), name
    gram = J3 @ J3.T
    lam = np.sort(np.linalg.eigvalsh(gram))
    for mode, scale in (("median", lam[1]), ("rmse", lam.mean())):
        b = balance_matrix(gram, mode)
        assert np.allclose(b @ gram @ b, scale * np.eye(3))


def test_aligned_mtl_matches_torchjd():
    # torchjd 0.8.1: torchjd.aggregation.AlignedMTL()(torch.tensor(J, dtype=float64)); torchjd averages the
    # aligned rows (preference vector 1/T) where the official code sums them: ×T here
    ref = np.array([0.3752678266307256, -0.19782888214759947, 0.4186878949255777, 0.08003636780976907])
    assert np.allclose(balance_matrix(J3 @ J3.T).sum(1) @ J3, 3 * ref, atol=1e-9)
    ref = np.array([-0.0017577668215244101, -0.010629026485702686, 0.12786323379097603])
    assert np.allclose(balance_matrix(JC @ JC.T).sum(1) @ JC, 3 * ref, atol=1e-9)
    with pytest.raises(ConfigError, match="scale_mode"):
        build_balancer("aligned_mtl", ["a", "b"], options={"scale_mode": "max"})


# --- FAMO --------------------------------------------------------------------------------------------

FAMO_LOSSES = [[2.0, 1.0, 0.5], [1.8, 0.7, 0.49], [1.5, 0.6, 0.45], [1.4, 0.3, 0.44], [1.1, 0.25, 0.40]]


def famo_weights(bal, losses_seq, start=0):
    out = []
    for k, row in enumerate(losses_seq, start):
        leaves = [torch.tensor(v, requires_grad=True) for v in row]
        bal.backward(dict(zip(bal.tasks, leaves, strict=True)), [], k)
        out.append(torch.stack([x.grad for x in leaves]))
    return out


def test_famo_matches_official_update():
    # official FAMO (github Cranial-XIX/FAMO @ 0a6ad06, famo.py: FAMO(n_tasks=3, device="cpu", gamma=1e-3,
    # w_lr=0.025)): weights = ∂ get_weighted_loss(L_k)/∂L_k, with update(L_k) called before step k > 0
    ref = [
        [0.1428571343421936, 0.2857142686843872, 0.5714285373687744],
        [0.14045953750610352, 0.3435666561126709, 0.5159738063812256],
        [0.14850178360939026, 0.34620559215545654, 0.5052926540374756],
        [0.11805345863103867, 0.4956810474395752, 0.38626548647880554],
        [0.12926577031612396, 0.49965131282806396, 0.37108293175697327],
    ]
    got = famo_weights(build_balancer("famo", ["a", "b", "c"]), FAMO_LOSSES)
    assert torch.allclose(torch.stack(got), torch.tensor(ref), atol=1e-5)
    # first step: equal logits, so w_t ∝ 1/L_t (the gradient of Σ log L_t / 3, normalised)
    inv = 1 / torch.tensor(FAMO_LOSSES[0])
    assert torch.allclose(got[0], inv / inv.sum())
    with pytest.raises(ConfigError, match="one_task"):
        build_balancer("famo", ["a", "b"], update="one_task")
    # max_norm clips the shared gradient, as the official FAMO.backward does
    losses, theta = linear_losses(J3 * 10)
    build_balancer("famo", list(losses), options={"max_norm": 0.5}).backward(losses, [theta], 0)
    assert abs(float(theta.grad.norm()) - 0.5) < 1e-6  # clip_grad_norm_ divides by norm + 1e-6


def test_famo_state_dict_round_trip_gives_identical_next_weights():
    a = build_balancer("famo", ["a", "b", "c"], options={"w_lr": 0.1})
    famo_weights(a, FAMO_LOSSES[:3])
    state = {k: v.clone() for k, v in a.state_dict().items()}
    assert {"logits", "exp_avg", "exp_avg_sq", "adam_steps", "prev_log", "has_prev"} <= set(state)
    b = build_balancer("famo", ["a", "b", "c"], options={"w_lr": 0.1})
    b.load_state_dict(state)
    wa, wb = famo_weights(a, FAMO_LOSSES[3:], 3), famo_weights(b, FAMO_LOSSES[3:], 3)
    assert all(torch.equal(x, y) for x, y in zip(wa, wb, strict=True))
    fresh = famo_weights(build_balancer("famo", ["a", "b", "c"], options={"w_lr": 0.1}), FAMO_LOSSES[3:])
    assert not torch.allclose(fresh[1], wa[1])  # the restored state matters


# --- every new method trains a tiny 3-task model ---------------------------------------------------------


@pytest.mark.parametrize("name", ["nash_mtl", "upgrad", "aligned_mtl", "famo", "mgda", "cagrad"])
def test_new_methods_train_a_tiny_three_task_model(name):
    torch.manual_seed(0)
    x = torch.randn(32, 6)
    targets = [x[:, :2].sum(1), x[:, 2] - x[:, 3], -x[:, 4:].sum(1)]
    trunk, heads = nn.Sequential(nn.Linear(6, 8), nn.Tanh()), nn.ModuleList(nn.Linear(8, 1) for _ in range(3))
    bal = build_balancer(name, ["a", "b", "c"], options={"ub": False} if name == "mgda" else {})
    opt = torch.optim.SGD([*trunk.parameters(), *heads.parameters(), *bal.parameters()], lr=0.1)
    first = None
    for step in range(8):
        opt.zero_grad()
        z = trunk(x)
        losses = {t: (h(z)[:, 0] - y).pow(2).mean() for t, h, y in zip("abc", heads, targets, strict=True)}
        total = bal.backward(losses, list(trunk.parameters()), step, heads=list(heads.parameters()))
        assert torch.isfinite(total)
        assert all(
            p.grad is not None and torch.isfinite(p.grad).all()
            for p in [*trunk.parameters(), *heads.parameters()]
        )
        opt.step()
        first = first if first is not None else sum(float(v.detach()) for v in losses.values())
    with torch.no_grad():
        z = trunk(x)
        last = sum(float((h(z)[:, 0] - y).pow(2).mean()) for h, y in zip(heads, targets, strict=True))
    assert np.isfinite(last) and last < first


@pytest.mark.parametrize("name", ["nash_mtl", "upgrad", "aligned_mtl"])
def test_new_gradient_methods_move_only_the_gram_matrix(name, host_copies):
    moved = host_copies
    torch.manual_seed(0)
    trunk, heads = nn.Linear(50, 40), nn.ModuleList([nn.Linear(40, 3) for _ in range(3)])
    z = trunk(torch.randn(8, 50))
    losses = {f"t{i}": h(z).pow(2).mean() for i, h in enumerate(heads)}
    build_balancer(name, list(losses)).backward(
        losses, list(trunk.parameters()), 0, heads=list(heads.parameters())
    )
    assert trunk.weight.grad is not None
    assert max(moved, default=0) <= 9
