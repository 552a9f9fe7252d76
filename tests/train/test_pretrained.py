"""Pretrained initialisation as published (issue 21.1): state dicts written here in the published
key names and shapes (torchvision resnet34, vgg16, vgg16_bn; the VGG-Face conversion), random
tensors, loaded through ``create_model(..., pretrained=...)``; every used tensor must land
exactly in the right parameter. Only the conv tensors (and a few small classifier keys, to be
``unused``) are generated: a full VGG-16 file is 500 MB."""
import hashlib
import json

import pytest
import torch

from ferdata.errors import FerdataError
from ferdata.train.models import create_model, load_pretrained

# The published layouts, written out independently of ferdata's own mapping.
VGG_WIDTHS = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)
VGG16_CONV_IDX = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)           # torchvision vgg16 features.N
VGG16_BN_CONV_IDX = (0, 3, 7, 10, 14, 17, 20, 24, 27, 30, 34, 37, 40)       # vgg16_bn: BN at N+1
FACE_NAMES = ("conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3",
              "conv4_1", "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3")
RESNET34 = ((64, 3), (128, 4), (256, 6), (512, 3))
PUB = {"vgg16": "vgg16-397923af.pth", "vgg16_bn": "vgg16_bn-6c64b313.pth", "vgg_face": "vgg_face_dag.pth",
       "resnet34": "resnet34-b627a593.pth"}
SMALL_FERATT = dict(input_size=32, att_encoder="resnet34", att_width=4, width=8, ft_filters=8, rec_filters=8)


def _bn(sd, key, c, g, counter=False):
    sd[f"{key}.weight"] = torch.rand(c, generator=g) + 0.5
    sd[f"{key}.bias"] = torch.randn(c, generator=g)
    sd[f"{key}.running_mean"] = torch.randn(c, generator=g)
    sd[f"{key}.running_var"] = torch.rand(c, generator=g) + 0.5
    if counter:
        sd[f"{key}.num_batches_tracked"] = torch.tensor(1234)


def vgg_state(layout: str, seed: int = 0) -> dict:
    """The 13 convs of VGG-16 in ``layout`` (vgg16 | vgg16_bn | vgg_face), the classifier's biases only."""
    g = torch.Generator().manual_seed(seed)
    sd, cin = {}, 3
    names = {"vgg16": [f"features.{i}" for i in VGG16_CONV_IDX],
             "vgg16_bn": [f"features.{i}" for i in VGG16_BN_CONV_IDX], "vgg_face": list(FACE_NAMES)}[layout]
    for i, (name, cout) in enumerate(zip(names, VGG_WIDTHS)):
        sd[f"{name}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * 0.05
        sd[f"{name}.bias"] = torch.randn(cout, generator=g)
        if layout == "vgg16_bn":
            _bn(sd, f"features.{VGG16_BN_CONV_IDX[i] + 1}", cout, g)
        cin = cout
    heads = ({"fc6.bias": 4096, "fc7.bias": 4096, "fc8.bias": 2622} if layout == "vgg_face" else
             {"classifier.0.bias": 4096, "classifier.3.bias": 4096, "classifier.6.bias": 1000})
    sd.update({k: torch.randn(n, generator=g) for k, n in heads.items()})
    return sd


def resnet34_state(seed: int = 0) -> dict:
    """torchvision's resnet34 state dict (with num_batches_tracked, fc included)."""
    g = torch.Generator().manual_seed(seed)
    sd = {"conv1.weight": torch.randn(64, 3, 7, 7, generator=g)}
    _bn(sd, "bn1", 64, g, counter=True)
    cin = 64
    for li, (w, n) in enumerate(RESNET34, start=1):
        for b in range(n):
            p = f"layer{li}.{b}"
            sd[f"{p}.conv1.weight"] = torch.randn(w, cin if b == 0 else w, 3, 3, generator=g)
            _bn(sd, f"{p}.bn1", w, g, counter=True)
            sd[f"{p}.conv2.weight"] = torch.randn(w, w, 3, 3, generator=g)
            _bn(sd, f"{p}.bn2", w, g, counter=True)
            if b == 0 and li > 1:
                sd[f"{p}.downsample.0.weight"] = torch.randn(w, cin, 1, 1, generator=g)
                _bn(sd, f"{p}.downsample.1", w, g, counter=True)
        cin = w
    sd["fc.weight"] = torch.randn(1000, 512, generator=g)
    sd["fc.bias"] = torch.randn(1000, generator=g)
    return sd


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("published")
    out = {}
    for layout in ("vgg16", "vgg16_bn", "vgg_face"):
        out[layout] = d / PUB[layout]
        torch.save(vgg_state(layout), out[layout])
    out["resnet34"] = d / PUB["resnet34"]
    torch.save(resnet34_state(), out["resnet34"])
    return out


def _sd(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def _ours(model):
    return model.state_dict()


def _one_line(exc) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_vgg16_bn_into_both_lbp_attention_streams(files):
    m = create_model("lbp_attention", num_classes=7, pretrained=str(files["vgg16_bn"]))
    sd, ours = _sd(files["vgg16_bn"]), _ours(m)
    convs = [f"{s}.{c}" for s in range(4) for c in range((2, 2, 3, 3)[s])]           # front.<stage>.<layer>
    assert len(convs) == 10
    for stream in ("image_stream", "lbp_stream"):
        for i, c in enumerate(convs):
            idx, our = VGG16_BN_CONV_IDX[i], f"{stream}.front.{c}"
            pub, bn = f"features.{idx}", f"features.{idx + 1}"
            w = sd[f"{pub}.weight"]
            if i == 0 and stream == "lbp_stream":
                w = w.sum(dim=1, keepdim=True)                           # 1-channel LBP: RGB kernels summed
            assert torch.equal(ours[f"{our}.0.weight"], w), (stream, i)
            for p in ("weight", "bias", "running_var"):
                assert torch.equal(ours[f"{our}.1.{p}"], sd[f"{bn}.{p}"]), (stream, i, p)
            assert torch.equal(ours[f"{our}.1.running_mean"], sd[f"{bn}.running_mean"] - sd[f"{pub}.bias"])
    rep = m.pretrained_report
    conv5 = [k for k in sd if k.startswith(("features.34.", "features.35.", "features.37.", "features.38.",
                                            "features.40.", "features.41."))]
    assert set(rep["unused"]) == set(conv5) | {"classifier.0.bias", "classifier.3.bias", "classifier.6.bias"}
    assert set(rep["loaded"]) == set(sd) - set(rep["unused"])
    assert rep["missing"] and not any(".front." in k for k in rep["missing"])
    assert "classifier.1.weight" in rep["missing"] and "image_stream.reduce.0.0.weight" in rep["missing"]
    assert rep["sha256"] == hashlib.sha256(files["vgg16_bn"].read_bytes()).hexdigest()
    assert rep["layout"] == PUB["vgg16_bn"] and rep["file"] == str(files["vgg16_bn"].resolve())


def test_plain_vgg16_folds_the_conv_bias_into_the_bn_mean(files):
    torch.manual_seed(0)
    m = create_model("lbp_attention", pretrained=str(files["vgg16"])).eval()
    sd, ours = _sd(files["vgg16"]), _ours(m)
    first = "image_stream.front.0.0"
    assert torch.equal(ours[f"{first}.0.weight"], sd["features.0.weight"])
    assert torch.equal(ours[f"{first}.1.running_mean"], -sd["features.0.bias"])
    assert torch.equal(ours["image_stream.front.3.2.0.weight"], sd["features.21.weight"])     # conv4_3
    assert f"{first}.1.weight" in m.pretrained_report["missing"]                # no BN in the file
    assert "features.0.bias" in m.pretrained_report["loaded"]
    # eval mode: conv-BN-ReLU gives the published conv + bias, ReLU (fresh BN: var 1, up to eps)
    x = torch.randn(2, 3, 16, 16)
    want = torch.relu(torch.nn.functional.conv2d(x, sd["features.0.weight"], sd["features.0.bias"], padding=1))
    got = m.image_stream.front[0][0](x)
    assert torch.allclose(got, want / (1 + 1e-5) ** 0.5, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layout", ["vgg_face", "vgg16"])
def test_vgg_face_and_vgg16_into_vggface_stn_msa_gray(files, layout):
    m = create_model("vggface_stn_msa", config="vgg16", input_size=32, pretrained=str(files[layout]))
    sd, ours = _sd(files[layout]), _ours(m)
    names = FACE_NAMES if layout == "vgg_face" else [f"features.{i}" for i in VGG16_CONV_IDX]
    ours_convs = [f"features.{s}.{c}" for s, n in enumerate((2, 2, 3, 3, 3)) for c in range(n)]
    assert m.in_channels == 1
    for i, (pub, our) in enumerate(zip(names, ours_convs)):
        w = sd[f"{pub}.weight"].sum(dim=1, keepdim=True) if i == 0 else sd[f"{pub}.weight"]
        assert torch.equal(ours[f"{our}.0.weight"], w), pub
        assert torch.equal(ours[f"{our}.1.running_mean"], -sd[f"{pub}.bias"]), pub
    heads = {"fc6.bias", "fc7.bias", "fc8.bias"} if layout == "vgg_face" else {
        "classifier.0.bias", "classifier.3.bias", "classifier.6.bias"}
    assert set(m.pretrained_report["unused"]) == heads
    assert len(m.pretrained_report["loaded"]) == 26


@pytest.mark.parametrize("in_channels", [3, 1])
def test_resnet34_into_the_feratt_attention_encoder(files, in_channels):
    m = create_model("feratt_rep_cls", in_channels=in_channels, embedding_dim=8, pretrained=str(files["resnet34"]),
                     **SMALL_FERATT)
    sd, ours = _sd(files["resnet34"]), _ours(m)
    for k, v in sd.items():
        if k.startswith("fc."):
            continue
        if k == "conv1.weight" and in_channels == 1:
            v = v.sum(dim=1, keepdim=True)
        assert torch.equal(ours[f"attention_net.encoder.{k}"], v), k
    rep = m.pretrained_report
    assert rep["unused"] == ["fc.weight", "fc.bias"] and len(rep["loaded"]) == len(sd) - 2
    assert not any(k.startswith("attention_net.encoder.") for k in rep["missing"])
    assert {"attention_net.head.weight", "attention_net.dec.0.0.0.weight", "embed.weight", "fc.weight"} <= set(
        rep["missing"])
    out = m(torch.randn(2, in_channels, 32, 32))
    assert out["attention"].shape == (2, 1, 32, 32) and torch.isfinite(out["logits"]).all()


def test_known_name_resolves_through_torch_home(files, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    ckpt = tmp_path / "th" / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    (ckpt / PUB["vgg16_bn"]).write_bytes(files["vgg16_bn"].read_bytes())
    m = create_model("vggface_stn_msa", config="vgg16", input_size=32, pretrained="vgg16_bn")
    assert m.pretrained_report["file"] == str((ckpt / PUB["vgg16_bn"]).resolve())
    with pytest.raises(FerdataError) as e:                                   # vgg16 is not there: never downloaded
        create_model("vggface_stn_msa", config="vgg16", input_size=32, pretrained="vgg16")
    msg = _one_line(e)
    assert str(ckpt / PUB["vgg16"]) in msg and "$TORCH_HOME/hub/checkpoints" in msg and "no such file" in msg
    with pytest.raises(FerdataError) as e:                                  # a known name that does not fit
        create_model("lbp_attention", pretrained="resnet34")
    assert "'resnet34' does not fit lbp_attention" in _one_line(e)


def test_missing_or_unreadable_file_is_one_error_line(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(FerdataError) as e:
        create_model("lbp_attention", pretrained=str(missing))
    msg = _one_line(e)
    assert str(missing) in msg and PUB["vgg16"] in msg and PUB["vgg16_bn"] in msg and "hub/checkpoints" in msg
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file\n" * 10)
    with pytest.raises(FerdataError) as e:
        create_model("feratt_cls", pretrained=str(junk), **SMALL_FERATT)
    msg = _one_line(e)
    assert str(junk) in msg and PUB["resnet34"] in msg


def test_wrong_shapes_or_layout_is_one_error_line_and_copies_nothing(files, tmp_path):
    sd = vgg_state("vgg_face")
    sd["conv3_1.weight"] = torch.zeros(256, 64, 3, 3)                     # conv3_1 takes 128 channels
    bad = tmp_path / "bad_face.pth"
    torch.save(sd, bad)
    torch.manual_seed(0)
    m = create_model("vggface_stn_msa", config="vgg16", input_size=32)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    with pytest.raises(FerdataError) as e:
        load_pretrained(m, str(bad))
    msg = _one_line(e)
    assert str(bad) in msg and "conv3_1.weight" in msg and PUB["vgg_face"] in msg and PUB["vgg16"] in msg
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())    # nothing copied
    with pytest.raises(FerdataError) as e:                                  # a ResNet34 file for a VGG model
        create_model("lbp_attention", pretrained=str(files["resnet34"]))
    msg = _one_line(e)
    assert str(files["resnet34"]) in msg and f"has the {PUB['resnet34']} layout" in msg and PUB["vgg16"] in msg
    with pytest.raises(FerdataError) as e:                                  # built narrower than VGG-16
        create_model("lbp_attention", width_mult=0.5, pretrained=str(files["vgg16"]))
    assert "features.0.weight" in _one_line(e)
    torch.save({"backbone.weight": torch.zeros(3)}, bad)                   # no published layout at all
    with pytest.raises(FerdataError) as e:
        create_model("lbp_attention", pretrained=str(bad))
    assert "keys match no published layout (backbone.weight" in _one_line(e)
    short = vgg_state("vgg_face")
    del short["conv5_3.weight"]                                            # a key the model needs is absent
    torch.save(short, bad)
    with pytest.raises(FerdataError) as e:
        create_model("vggface_stn_msa", config="vgg16", input_size=32, pretrained=str(bad))
    assert "has no conv5_3.weight" in _one_line(e)


@pytest.mark.parametrize("name,kwargs,hint", [
    ("preactresnet18", {}, "preactresnet18"), ("va_cnn", {}, "va_cnn"), ("deep_emotion", {}, "deep_emotion"),
    ("feratt_cls", {"input_size": 32}, "att_encoder='resnet34'"),
    ("vggface_stn_msa", {}, "config='vgg16'"),
])
def test_models_without_fitting_weights_refuse(files, name, kwargs, hint):
    path = files["resnet34"] if name.startswith("feratt") else files["vgg16"]
    with pytest.raises(FerdataError) as e:
        create_model(name, pretrained=str(path), **kwargs)
    assert hint in _one_line(e)
    assert create_model(name, pretrained="none", **kwargs).pretrained_report is None


@pytest.mark.slow            # a FERAtt fit: ~8 s on 2 idle CPU cores (the ResNet34 encoder is full width)
def test_fit_records_the_pretrained_file_in_config_json(files, tmp_path):
    from ferdata.train import fit
    from ferdata.train.config import TrainConfig

    cfg = TrainConfig(model="feratt_cls", model_kwargs=SMALL_FERATT, pretrained=str(files["resnet34"]),
                      eval_on="renders", protocol="holdout", epochs=1, max_steps_per_epoch=1, batch_size=8,
                      num_workers=0, sample_per_face=8, sample_size=32, eval_batch_size=64, lr=1e-4)
    fit(cfg, tmp_path / "run")
    conf = json.loads((tmp_path / "run" / "config.json").read_text())
    rep = conf["resolved"]["pretrained"]
    assert conf["pretrained"] == str(files["resnet34"])
    assert rep["sha256"] == hashlib.sha256(files["resnet34"].read_bytes()).hexdigest()
    assert rep["file"] == str(files["resnet34"].resolve()) and rep["unused"] == ["fc.weight", "fc.bias"]
    assert len(rep["loaded"]) == 216 and rep["missing"]
