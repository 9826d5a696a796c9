"""The model says what it computed (`ModelOutput`), and what the engine reads from it is right:
the features behind the supervised loss (MGDA-UB), shared vs head parameters (GradNorm), and the
fusion auxiliary loss under every objective."""

import pytest
import torch

from polymodal.augment.views import Views
from polymodal.batch import Batch
from polymodal.config import build_config
from polymodal.fusion import FusionModel, FusionSpec, Tap, fuse
from polymodal.models import create_encoder
from polymodal.models.multihead import MultiHeadModel
from polymodal.mtl import build_balancer
from polymodal.ssl import METHODS, make_teacher

SHAPES = {"image": (1, 28, 28), "audio": (20, 41)}


def fusion(aux_loss: float = 0.0, tasks: dict | None = None) -> FusionModel:
    torch.manual_seed(0)
    enc = {
        "image": create_encoder("cnn28", width=4, out_dim=16),
        "audio": create_encoder("audio_cnn", n_mels=20, width=4, out_dim=16),
    }
    spec = FusionSpec.of(fuse([Tap("image"), Tap("audio")], op="concat", width=8), trunk=[8])
    return FusionModel(enc, tasks or {"digit": 10}, spec, SHAPES, aux_loss=aux_loss)


def av_batch(n: int, labeled: bool = True, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    x = {"image": torch.rand(n, 1, 28, 28, generator=g), "audio": torch.randn(n, 20, 41, generator=g)}
    if not labeled:
        return Batch(x)
    return Batch(x, {"digit": torch.arange(n) % 10, "parity": torch.arange(n) % 2})


@pytest.mark.parametrize("method", ["vat", "ict"])
def test_mgda_ub_features_are_those_of_the_supervised_forward(method):
    """VAT and ICT run several grad-enabled forwards; the last one (adversarial / mixed unlabeled rows)
    is not where the supervised loss came from. With the unlabeled terms switched off the loss is the
    supervised one alone, so its gradient w.r.t. the returned features must be non-zero."""
    torch.manual_seed(0)
    model = MultiHeadModel({"image": create_encoder("cnn28", width=4, out_dim=8)}, {"class": 3})
    lab = Batch({"image": torch.rand(4, 1, 28, 28)}, {"class": torch.tensor([0, 1, 2, 0])})
    unl = Batch({"image": torch.rand(6, 1, 28, 28)})
    views = Views({}, {"image": "image"})
    off = {"vat": {"weight": 0.0, "entmin": 0.0}, "ict": {"weight": 0.0}}[method]
    cfg = build_config({"method": method, method: off})
    m = METHODS.get(method)
    extra = {"teacher": make_teacher(model, 0.99).module} if m.teacher_decay else {}
    terms = m.objective(model, lab, unl, views, 0.5, cfg.method_options(), torch.Generator(), **extra)
    assert terms.features is not None and terms.features.shape == (4, 8)  # the labeled rows' forward
    (g,) = torch.autograd.grad(terms.losses["class"], terms.features, retain_graph=True)
    assert g.abs().sum() > 0
    # and MGDA-UB solves on it: weights from the Gram matrix of these features' task gradients
    bal = build_balancer("mgda", ["class"], options={"ub": True})
    bal.backward(terms.losses, list(model.parameters()), 0, features=terms.features)
    assert all(p.grad is not None for p in model.encoders.parameters())


def test_shared_parameters_exclude_auxiliary_heads_so_gradnorm_reads_the_trunk():
    """GradNorm's "last shared layer" is the last >= 2-D shared parameter; auxiliary heads are per task,
    so with aux_loss > 0 that layer must still be reached by every task's loss."""
    model = fusion(aux_loss=1.0, tasks={"digit": 10, "parity": 2}).train()
    heads = {id(p) for p in model.head_parameters()}
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(names[id(p)].startswith(("heads.", "aux_heads.")) for p in model.head_parameters())
    shared = model.shared_parameters()
    assert shared and not heads & {id(p) for p in shared}
    last = [p for p in shared if p.ndim >= 2][-1]
    assert names[id(last)].startswith("trunks.")
    b = av_batch(8)
    out = model(b)
    for task in ("digit", "parity"):
        (g,) = torch.autograd.grad(
            torch.nn.functional.cross_entropy(out[task], b.targets[task]), last, retain_graph=True
        )
        assert g.abs().sum() > 0, task
    bal = build_balancer("gradnorm", ["digit", "parity"])
    losses = {t: torch.nn.functional.cross_entropy(out[t], b.targets[t]) for t in ("digit", "parity")}
    bal.backward(losses, shared, 0, heads=model.head_parameters())
    assert (bal.weight.grad.abs() > 0).all()  # both tasks' gradient norms at that layer are non-zero


@pytest.mark.parametrize("method", ["uda", "fixmatch", "mixmatch", "supervised"])
def test_fusion_aux_loss_works_with_every_objective(method):
    """The auxiliary heads' cross-entropy is added by the shared supervised term, so the same model
    with aux_weight 0 gives a loss smaller by a positive amount that trains the auxiliary heads."""
    lab, unl = av_batch(6), av_batch(8, labeled=False, seed=1)
    lab = Batch(lab.inputs, {"digit": lab.targets["digit"]})
    views = Views({}, {"image": "image", "audio": "audio"})
    cfg = build_config({"method": method, "fixmatch": {"threshold": 0.0}})
    objective = METHODS.get(method).objective

    def losses(weight: float) -> tuple[torch.Tensor, FusionModel]:
        model = fusion(aux_loss=1.0).train()
        model.aux_weight = weight
        torch.manual_seed(1)
        terms = objective(model, lab, unl, views, 0.5, cfg.method_options(), torch.Generator().manual_seed(0))
        return terms.losses["digit"], model

    with_aux, model = losses(1.0)
    without, _ = losses(0.0)
    assert with_aux.item() > without.item() + 1e-3
    (with_aux - without).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.aux_heads.parameters())
    with torch.no_grad():
        assert model.eval()(lab).aux == {}  # training only


def test_model_output_reads_as_logits_and_splits_by_rows():
    model = fusion(aux_loss=0.5).train()
    out = model(av_batch(10))
    assert set(out) == {"digit"} and out["digit"].shape == (10, 10) and len(out) == 1
    a, b = out.split([4, 6])
    assert torch.equal(a["digit"], out["digit"][:4]) and torch.equal(b.features, out.features[4:])
    assert [z.shape[0] for z, _ in b.aux["digit"]] == [6, 6] and b.aux_weight == 0.5
