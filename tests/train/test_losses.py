"""Training losses: classification, reconstruction, the structured Gaussian manifold loss and
FERAtt's combined loss, against hand-computed values and their gradients."""
from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from ferdata.train import losses as L


def test_classification_losses():
    torch.manual_seed(0)
    logits = torch.randn(4, 5)
    y = torch.tensor([0, 4, 2, 2])
    ce = L.classification_loss(logits, y)
    manual = -(logits.log_softmax(1)[torch.arange(4), y]).mean()
    torch.testing.assert_close(ce, manual)
    # soft targets equal to one-hot give the same value
    torch.testing.assert_close(L.classification_loss(logits, F.one_hot(y, 5).float()), ce)
    bce = L.classification_loss(logits, y, kind="bce")
    t = F.one_hot(y, 5).float()
    manual = -(t * F.logsigmoid(logits) + (1 - t) * F.logsigmoid(-logits)).mean()
    torch.testing.assert_close(bce, manual)
    w = torch.tensor([1.0, 2.0, 1.0, 1.0, 0.5])
    assert L.classification_loss(logits, y, weight=w).item() != pytest.approx(ce.item())
    assert L.classification_loss(logits, y, reduction="none").shape == (4,)
    with pytest.raises(ValueError, match="kind"):
        L.classification_loss(logits, y, kind="hinge")
    with pytest.raises(ValueError, match="integer"):
        L.classification_loss(logits, y.float())
    with pytest.raises(ValueError, match="classes"):
        L.classification_loss(logits, torch.rand(4, 3), kind="bce")


def test_reconstruction_loss():
    torch.manual_seed(0)
    img = torch.randn(2, 3, 8, 8)
    mask = torch.zeros(2, 8, 8, dtype=torch.uint8)
    mask[:, 2:6, 2:6] = 255
    target = img * (mask[:, None].float() / 255)
    assert L.reconstruction_loss(target, img, mask).item() == 0.0
    assert L.reconstruction_loss(target, img, mask.bool()).item() == 0.0
    assert L.reconstruction_loss(img, img).item() == 0.0                       # no mask: the image itself
    rec = torch.zeros(2, 3, 8, 8)
    torch.testing.assert_close(L.reconstruction_loss(rec, img, mask), target.pow(2).mean())
    small = F.avg_pool2d(target, 4)                                              # a 2×2 reconstruction
    assert L.reconstruction_loss(small, img, mask).item() == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="differ in size"):
        L.reconstruction_loss(rec, img, mask[:, :4])


def test_manifold_loss_hand_value():
    # 1-D, two classes at batch means 0 and 2, σ = 1: P(other | z) = σ(-2) for both samples;
    # per-sample loss = (1 − p)² + p² with p = P(other) → 2·σ(−2)²
    z = torch.tensor([[0.0], [2.0]])
    y = torch.tensor([0, 1])
    p = torch.sigmoid(torch.tensor(-2.0))
    torch.testing.assert_close(L.gaussian_manifold_loss(z, y), 2 * p ** 2)
    post = L.gaussian_posterior(z, torch.tensor([[0.0], [2.0]]))
    torch.testing.assert_close(post, torch.tensor([[1 - p, p], [p, 1 - p]]))
    # sigma scales distances
    p2 = torch.sigmoid(torch.tensor(-2.0 / 4))
    torch.testing.assert_close(L.gaussian_manifold_loss(z, y, sigma=2.0), 2 * p2 ** 2)


def test_manifold_loss_lower_for_clustered_embeddings():
    torch.manual_seed(0)
    y = torch.arange(8).repeat_interleave(10)
    centres = 4.0 * torch.eye(8, 64)
    clustered = centres[y] + 0.1 * torch.randn(80, 64)
    loose = centres[y] + 3.0 * torch.randn(80, 64)
    overlapping = torch.randn(80, 2)                 # 8 classes mixed in 2-d: posterior near uniform
    lc, ll, lo = (L.gaussian_manifold_loss(e, y).item() for e in (clustered, loose, overlapping))
    assert lc < 1e-3 < ll and lc < lo
    assert lo > 0.5                                  # (1 − 1/8 = 0.875 for a uniform posterior)
    # fixed anchors: at the anchors low, elsewhere high
    anchors = L.GaussianManifoldLoss.simplex_means(8, 64)
    assert L.gaussian_manifold_loss(anchors[y], y, means=anchors).item() < 1e-3
    assert L.gaussian_manifold_loss(anchors[(y + 1) % 8], y, means=anchors).item() > 1.5
    # a single class in the batch: nothing to separate
    assert L.gaussian_manifold_loss(torch.randn(5, 4), torch.zeros(5, dtype=torch.long)).item() == 0.0


def test_manifold_loss_gradients_and_training_step():
    torch.manual_seed(0)
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    z = torch.zeros(6, 4, requires_grad=True)        # all at one point: zero distances
    loss = L.gaussian_manifold_loss(z, y)
    loss.backward()
    assert torch.isfinite(z.grad).all()
    # a few gradient steps separate the classes and lower the loss
    z = torch.randn(6, 4, requires_grad=True)
    opt = torch.optim.SGD([z], lr=1.0)
    first = None
    for _ in range(50):
        opt.zero_grad()
        loss = L.gaussian_manifold_loss(z, y)
        first = first if first is not None else loss.item()
        loss.backward()
        opt.step()
    assert loss.item() < first
    # soft targets: one-hot soft target equals the integer one
    e = torch.randn(6, 4)
    torch.testing.assert_close(L.gaussian_manifold_loss(e, F.one_hot(y, 3).float()),
                               L.gaussian_manifold_loss(e, y, num_classes=3))
    with pytest.raises(ValueError, match="means must be"):
        L.gaussian_manifold_loss(e, y, means=torch.zeros(3, 5))
    with pytest.raises(ValueError, match="out of range"):
        L.gaussian_manifold_loss(e, y, means=torch.zeros(2, 4))


def test_feratt_loss_combines_terms():
    from ferdata.train.models import create_model
    torch.manual_seed(0)
    m = create_model("feratt_rep_cls", input_size=32, att_width=4, width=8, embedding_dim=8)
    x = torch.randn(4, 3, 32, 32)
    mask = torch.zeros(4, 32, 32, dtype=torch.uint8)
    mask[:, 8:24, 8:24] = 255
    y = torch.tensor([0, 1, 1, 2])
    out = m(x)
    crit = L.FERAttLoss()
    parts = crit(out, y, image=x, mask=mask)
    assert set(parts) == {"loss", "cls", "rep", "att"}
    torch.testing.assert_close(parts["loss"], parts["cls"] + parts["rep"] + parts["att"])
    parts["loss"].backward()
    assert all(p.grad is not None for p in m.parameters())
    # plain classifier outputs: classification only; no image → no attention term
    parts = L.feratt_loss({"logits": out["logits"].detach()}, y, w_rep=2.0)
    assert set(parts) == {"loss", "cls"}
    parts = crit({k: v.detach() for k, v in out.items()}, y)
    assert set(parts) == {"loss", "cls", "rep"}
    weighted = L.FERAttLoss(w_cls=0.0, w_rep=0.0, w_att=2.0)({k: v.detach() for k, v in out.items()}, y, x, mask)
    assert set(weighted) == {"loss", "att"}
    torch.testing.assert_close(weighted["loss"], 2.0 * weighted["att"])
    with pytest.raises(ValueError, match="w_att"):
        L.FERAttLoss(w_att=-1.0)
    with pytest.raises(KeyError, match="logits"):
        crit({"embedding": out["embedding"]}, y)


def test_attention_loss_kinds_match_the_paper_and_the_released_code():
    import math

    g = torch.Generator().manual_seed(0)
    rec, img = torch.rand(2, 3, 8, 8, generator=g), torch.rand(2, 3, 8, 8, generator=g)
    d = (img - rec).abs()
    assert L.reconstruction_loss(rec, img) == pytest.approx(float((d ** 2).mean()))          # §3.1 pixel-wise MSE
    e = torch.exp(6.0 * d)                                                                     # released Attloss
    assert L.reconstruction_loss(rec, img, kind="released") == pytest.approx(float(5 * ((e - 1) / (e + 1)).mean()))
    assert L.reconstruction_loss(rec, img, kind="released_mse") == pytest.approx(float(10 * (d ** 2).mean()))
    big = L.reconstruction_loss(rec * 0, img * 0 + 100, kind="released_mse")
    assert float(big) == pytest.approx(300.0)                                                  # clamped at 30, x10
    assert float(L.reconstruction_loss(rec * 0, img * 0 + 100, kind="released")) <= 5.0 + 1e-6
    with pytest.raises(ValueError, match="kind must be one of"):
        L.reconstruction_loss(rec, img, kind="l1")
    loss = L.FERAttLoss(att_kind="released")({"logits": torch.zeros(2, 3), "reconstruction": rec},
                                             torch.tensor([0, 1]), img)
    assert float(loss["att"]) == pytest.approx(float(5 * torch.tanh(3 * d).mean())) and not math.isnan(loss["loss"])
