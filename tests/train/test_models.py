"""Tests generated from the model registry (timm-style): every registered model, its true
configuration, batch of 2 on CPU — forward, output contract, backward, eval mode — plus
model-specific checks against the seeds. ``pytest -s`` prints the parameter counts."""
from __future__ import annotations

import json
import math

import pytest
import torch
from torch.nn import functional as F

from ferdata.train.models import (count_parameters, create_model, forward_batch, list_models, model_entry,
                                  model_inputs, register_model)
from ferdata.train.models.blocks import FERModel, MultipleSelfAttention, SelfAttention2d

ALL = list_models()
EXPECTED = {"preactresnet18", "feratt_cls", "feratt_rep_cls", "lbp_attention", "va_cnn", "va_cnn_symmetric",
            "deep_emotion", "deep_emotion_msa", "vggface_stn_msa"}


def _extra_shapes(model, b):
    """Expected shapes of the extra outputs of ``model`` for batch size ``b``."""
    h, w = model.input_size
    c = model.in_channels
    shapes = {
        "embedding": (b, getattr(model, "embedding_dim", 64)),
        "reconstruction": (b, c, h, w),
        "reconstruction_small": (b, c, getattr(model, "rep_size", 32), getattr(model, "rep_size", 32)),
        "theta": (b, 2, 3),
        "msa_weights": (b, len(model.msa.heads)) if getattr(model, "msa", None) is not None else None,
    }
    if model.model_name.startswith("feratt"):
        shapes["attention"] = (b, 1, h, w)
    elif model.model_name == "lbp_attention":
        shapes["attention"] = (b, 1, h // 8, w // 8)
    elif model.model_name.startswith("va_cnn"):
        shapes["attention"] = (b, 1, h // 16, w // 16)
    return shapes


def test_registry_has_every_seed_model():
    assert EXPECTED <= set(ALL)
    assert list_models("feratt*") == ["feratt_cls", "feratt_rep_cls"]


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "lbp_attention" else n for n in ALL])
def test_forward_backward_true_config(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=8)
    assert isinstance(model, FERModel)
    n_params = count_parameters(model)
    print(f"\n{name}: {n_params:,} parameters; inputs {model_inputs(model).to_dict()}")
    assert n_params > 0
    spec = model_inputs(name)
    assert spec == model_inputs(model)
    json.dumps(spec.to_dict())
    inputs = model.example_inputs(2)
    assert len(inputs) == len(spec.fields)
    for t, f in zip(inputs, spec.fields):
        assert t.shape == (2, spec.channels(f), *spec.input_size)

    model.train()
    out = model(*inputs)
    assert isinstance(out, dict) and set(out) == set(model.outputs) and "logits" in out
    assert out["logits"].shape == (2, 8)
    for key, shape in _extra_shapes(model, 2).items():
        if key in out:
            assert tuple(out[key].shape) == shape, key
    for key, v in out.items():
        assert torch.isfinite(v).all(), key

    loss = F.cross_entropy(out["logits"], torch.tensor([0, 7])) + sum(
        v.float().pow(2).mean() for k, v in out.items() if k != "logits")
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads), "a parameter got no gradient"
    assert all(torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0

    model.eval()
    with torch.no_grad():
        one = model(*(t[:1] for t in inputs))
        again = model(*(t[:1] for t in inputs))
    assert one["logits"].shape == (1, 8)
    torch.testing.assert_close(one["logits"], again["logits"])
    assert all(torch.isfinite(v).all() for v in one.values())


@pytest.mark.parametrize("name,kwargs,size", [
    ("preactresnet18", {"width": 16, "num_classes": 7}, (32, 32)),
    ("feratt_rep_cls", {"input_size": 64, "att_width": 8, "width": 16, "embedding_dim": 16}, (64, 64)),
    ("lbp_attention", {"input_size": 64, "width_mult": 0.25, "reduce_channels": 16, "growth": 8}, (64, 64)),
    ("vggface_stn_msa", {"config": "vgg16", "input_size": 64, "width_mult": 0.25, "heads": 2}, (64, 64)),
    ("va_cnn", {"pooling": "flatten"}, (144, 112)),
    ("va_cnn", {"pooling": "gap", "in_channels": 3}, (144, 112)),
    ("deep_emotion", {"stn": False}, (48, 48)),
])
def test_options(name, kwargs, size):
    torch.manual_seed(0)
    model = create_model(name, **kwargs)
    assert model.input_size == size
    assert model_inputs(name, **kwargs) == model_inputs(model)
    out = model(*model.example_inputs(2))
    assert out["logits"].shape == (2, kwargs.get("num_classes", 8))
    assert set(out) == set(model.outputs)
    out["logits"].sum().backward()
    if "embedding_dim" in kwargs:
        assert out["embedding"].shape == (2, kwargs["embedding_dim"])


def test_forward_batch_and_input_contract():
    torch.manual_seed(0)
    m = create_model("lbp_attention", input_size=32, width_mult=0.125, reduce_channels=8, growth=4)
    assert m.inputs == ("image", "lbp") and m.extra_channels == {"lbp": 1}
    img, lbp = m.example_inputs(2)
    out = forward_batch(m, {"image": img, "lbp": lbp[:, 0], "label": torch.zeros(2)})   # (B,H,W) LBP accepted
    assert out["logits"].shape == (2, 8)
    with pytest.raises(KeyError, match="lbp"):
        forward_batch(m, {"image": img})
    with pytest.raises(ValueError, match="same batch and size"):
        m(img, lbp[:, :, :16, :16])


def test_registry_errors():
    with pytest.raises(KeyError, match="unknown model"):
        create_model("no_such_model")
    with pytest.raises(ValueError, match="already registered"):
        @register_model("preactresnet18")
        class Other(FERModel):
            pass
    with pytest.raises(TypeError):
        register_model("not_a_module")(object)
    assert model_entry("va_cnn_symmetric").defaults == {"symmetric": True}
    with pytest.raises(ValueError, match="divisible by 16"):
        create_model("feratt_cls", input_size=(100, 100))
    with pytest.raises(ValueError, match="num_classes"):
        create_model("va_cnn", num_classes=0)


def test_va_cnn_matches_paper_parameter_counts():
    """Seed 002 Tables 2/3 count weights only (no biases): 360,720 (baseline) and
    313,682 (= 304,272 conv + 128·66 + 66·1 + 128·7) with visual attention, 7 classes."""
    def weights(m):
        return sum(p.numel() for n, p in m.named_parameters() if not n.endswith("bias"))
    assert weights(create_model("va_cnn", num_classes=7)) == 313_682
    assert weights(create_model("va_cnn", num_classes=7, pooling="flatten")) == 360_720


def test_va_cnn_weight_maps():
    torch.manual_seed(0)
    x = torch.randn(3, 1, 144, 112)
    for name in ("va_cnn", "va_cnn_symmetric"):
        m = create_model(name).eval()
        with torch.no_grad():
            b = m(x)["attention"]
        assert b.shape == (3, 1, 9, 7)
        torch.testing.assert_close(b.sum(dim=(1, 2, 3)), torch.ones(3))
        assert (b >= 0).all()
        if name == "va_cnn_symmetric":
            torch.testing.assert_close(b, torch.flip(b, dims=[-1]))


def test_stn_starts_as_identity_and_msa_weights_sum_to_one():
    torch.manual_seed(0)
    for name in ("deep_emotion", "deep_emotion_msa", "vggface_stn_msa"):
        m = create_model(name).eval()
        x = torch.randn(2, 1, 48, 48)
        with torch.no_grad():
            out = m(x)
            warped, theta = m.stn(x)
        eye = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).expand(2, 2, 3)
        torch.testing.assert_close(out["theta"], eye)
        torch.testing.assert_close(warped, x, atol=1e-5, rtol=1e-5)
        if "msa_weights" in out:
            torch.testing.assert_close(out["msa_weights"].sum(1), torch.ones(2))
            assert (out["msa_weights"] > 0).all()


def test_self_attention_starts_as_identity_and_attends():
    torch.manual_seed(0)
    sa = SelfAttention2d(16)
    x = torch.randn(2, 16, 5, 5)
    torch.testing.assert_close(sa(x), x)            # γ = 0 at init
    with torch.no_grad():
        sa.gamma.fill_(1.0)
    y = sa(x)
    assert not torch.allclose(y, x)
    # a location's output depends on every other location (non-local)
    x2 = x.clone()
    x2[:, :, 4, 4] += 10.0
    assert not torch.allclose(sa(x2)[:, :, 0, 0], y[:, :, 0, 0])
    msa = MultipleSelfAttention(16, (5, 5), heads=3)
    out, w = msa(x)
    assert out.shape == x.shape and w.shape == (2, 3)
    with pytest.raises(ValueError, match="built for"):
        msa(torch.randn(2, 16, 6, 6))


def test_feratt_flow():
    torch.manual_seed(0)
    m = create_model("feratt_rep_cls").eval()
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        out = m(x)
    assert out["embedding"].shape == (2, 64)
    assert ((out["attention"] >= 0) & (out["attention"] <= 1)).all()
    torch.testing.assert_close(out["reconstruction_small"], F.avg_pool2d(out["reconstruction"], 4))
    # the classifier sees the input only through I_att: pin the reconstruction module's
    # output and two different images get the same logits (and embedding)
    y = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        assert not torch.allclose(m(y)["logits"], out["logits"])
        pinned = torch.full((2, 3, 128, 128), 0.3)
        h = m.reconstruct.register_forward_hook(lambda mod, args, res: pinned)
        a, b = m(x), m(y)
        h.remove()
    torch.testing.assert_close(a["logits"], b["logits"])
    torch.testing.assert_close(a["embedding"], b["embedding"])
    # the logits depend on the trunk only through the d=64 embedding ẑ
    with torch.no_grad():
        h = m.embed.register_forward_hook(lambda mod, args, res: torch.ones_like(res))
        c, d = m(x), m(y)
        h.remove()
    torch.testing.assert_close(c["logits"], d["logits"])


#: small configurations for the optimisation smoke test (true configs are tested above)
SMALL = {
    "preactresnet18": {"width": 8},
    "feratt_cls": {"input_size": 32, "att_width": 4, "width": 8},
    "feratt_rep_cls": {"input_size": 32, "att_width": 4, "width": 8, "embedding_dim": 8},
    "lbp_attention": {"input_size": 32, "width_mult": 0.125, "reduce_channels": 8, "growth": 4, "dropout": 0.0},
    "va_cnn": {"dropout": 0.0},
    "va_cnn_symmetric": {"dropout": 0.0},
    "deep_emotion": {"dropout": 0.0},
    "deep_emotion_msa": {"dropout": 0.0},
    "vggface_stn_msa": {"width_mult": 0.125, "hidden": 32, "dropout": 0.0},
}


@pytest.mark.parametrize("name", ALL)
def test_initial_scale_and_a_few_optimisation_steps(name):
    """At init the loss is about log(C) (and FERAtt's I_att MSE about the target's variance);
    a few Adam steps on one fixed batch lower the joint loss."""
    from ferdata.train.losses import FERAttLoss
    torch.manual_seed(0)
    model = create_model(name, num_classes=4, **SMALL.get(name, {}))
    inputs = model.example_inputs(4)
    mask = torch.zeros(4, *model.input_size, dtype=torch.uint8)
    mask[:, 4:-4, 4:-4] = 255
    y = torch.tensor([0, 1, 2, 3])
    crit = FERAttLoss()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for step in range(8):
        opt.zero_grad()
        parts = crit(model(*inputs), y, image=inputs[0], mask=mask)
        if step == 0:
            assert parts["cls"].item() < 2 * math.log(4)
            if "att" in parts:
                assert parts["att"].item() < 2.0
        parts["loss"].backward()
        opt.step()
        losses.append(parts["loss"].item())
    assert min(losses[-3:]) < losses[0], losses
