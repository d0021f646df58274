"""MetaF2N end to end: a 2-step meta-training smoke run of :demo, then `python -m sslsr.adapt` on it
(faces from --faces, oracle pseudo-GT) and its bad inputs."""

import json
import warnings

import numpy as np
import pytest

from sslsr import adapt
from sslsr.cli import UserError
from sslsr.data.io import read_image, read_image_unchanged, write_image
from sslsr.data.imresize import imresize
from tests.conftest import run_cli

# A 160 px HR crop of the astronaut around her face (sslsr.meta.tasks.DEMO_FACE_BOXES: x 160-288,
# y 48-176), and the face box in its x4 LR.
HR_YX = (32, 144)
BOX = [4, 4, 36, 36]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """configs/metaf2n_ssl.py:demo for 2 meta-steps (its L1 stage off), shrunk to compile quickly:
    a 4-feature SRVGGNetCompact instead of the 2-block RRDBNet, 32 px patches, 1 task x 1 patch,
    no LPIPS (its AlexNet takes ~10 s to load); order 2, SSL and the GAN stay on."""
    from configs.metaf2n_ssl import get_config
    from sslsr.train.loop import train_and_evaluate

    c = get_config("demo")
    c.generator.arch = "SRVGGNetCompact"
    c.generator.kwargs = dict(num_in_ch=3, num_out_ch=3, num_feat=4, num_conv=1, upscale=4, act_type="prelu")
    c.discriminator.kwargs.num_feat = 4
    c.meta.update(patches=1, face_size=32, mask_feat=4)
    c.data.hr_patch = 32
    c.train.update(batch_size=1, total_steps=2, pretrain_steps=0)
    c.loss.lpips_weight = 0.0
    c.log.update(every=1, ckpt_every=2)
    wd = tmp_path_factory.mktemp("metaf2n")
    metrics = train_and_evaluate(c, str(wd))
    for key in ("l_g_pix", "l_g_ssl", "l_g_gan", "l_reg", "l_inner", "l_d_real", "grad_norm_mask"):
        assert np.isfinite(metrics[key]), key
    assert metrics["grad_norm_mask"] > 0  # second order: the task loss reaches the MaskNet
    assert (wd / "checkpoints" / "2" / "mask").is_dir()
    return wd


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    from skimage import data

    d = tmp_path_factory.mktemp("photo")
    y, x = HR_YX
    hr = np.ascontiguousarray(data.astronaut()[y : y + 160, x : x + 160])
    lr = np.clip(np.round(imresize(hr.astype(np.float64), 0.25)), 0, 255).astype(np.uint8)
    write_image(d / "hr.png", hr)
    write_image(d / "lr.png", lr)
    (d / "boxes.json").write_text(json.dumps([{"box": BOX}]))
    (d / "none.json").write_text("[]")
    return d


def _adapt(workdir, photo, out, *extra):
    run_cli(adapt.main, "adapt", "--checkpoint", workdir, "--input", photo / "lr.png", "--out", out,
            "--restorer", "oracle", "--ground_truth", photo / "hr.png", *extra)


def test_adapt_writes_sr_faces_and_masks(workdir, photo, tmp_path):
    _adapt(workdir, photo, tmp_path / "sr.png", "--faces", photo / "boxes.json", "--steps", 2)
    assert read_image(tmp_path / "sr.png").shape == (160, 160, 3)
    report = json.loads((tmp_path / "sr_faces.json").read_text())
    assert report["restorer"] == "oracle" and report["message"].startswith("adapted on 1 face(s), 16 patches, 2 step(s)")
    assert report["faces"][0]["box"] == BOX and report["faces"][0]["mask_min"] >= 0
    side = report["faces"][0]["crop_yx_side"][2]
    assert read_image(tmp_path / "sr_face0.png").shape == (4 * side, 8 * side, 3)  # LR-up | pseudo-GT
    assert read_image_unchanged(tmp_path / "sr_mask0.png").shape == (4 * side, 4 * side)


def test_no_face_falls_back_to_the_unadapted_model(workdir, photo, tmp_path):
    from sslsr.inference import NetworkUpscaler, super_resolve, to_uint8
    from sslsr.weights import load_generator

    with pytest.warns(UserWarning, match="no face given: using the unadapted model"):
        _adapt(workdir, photo, tmp_path / "sr.png", "--faces", photo / "none.json")
    report = json.loads((tmp_path / "sr_faces.json").read_text())
    assert report["faces"] == [] and "unadapted" in report["message"]
    plain = to_uint8(super_resolve(NetworkUpscaler(load_generator(str(workdir))), read_image(photo / "lr.png")))
    np.testing.assert_array_equal(read_image(tmp_path / "sr.png"), plain)


def test_bad_inputs_are_one_clear_line(workdir, photo, tmp_path):
    write_image(tmp_path / "tiny.png", np.zeros((8, 12, 3), np.uint8))
    with pytest.raises(UserError, match=r"tiny.png: 12x8 px is too small"):
        run_cli(adapt.main, "adapt", "--checkpoint", workdir, "--input", tmp_path / "tiny.png", "--out",
                tmp_path / "o.png", "--restorer", "oracle")
    with pytest.raises(UserError, match="--restorer: give a GPEN-BFR .pth file, or 'oracle'"):
        run_cli(adapt.main, "adapt", "--checkpoint", workdir, "--input", photo / "lr.png", "--out", tmp_path / "o.png",
                "--faces", photo / "boxes.json")
    (tmp_path / "bad.json").write_text('{"box": 1}')
    with pytest.raises(UserError, match="bad.json: not a list of face boxes"):
        _adapt(workdir, photo, tmp_path / "o.png", "--faces", tmp_path / "bad.json")
    # grey photo: runs on three equal channels, says so, writes grey
    write_image(tmp_path / "grey.png", read_image(photo / "lr.png")[:, :, 1])
    with pytest.warns(UserWarning, match="grey photo"):
        run_cli(adapt.main, "adapt", "--checkpoint", workdir, "--input", tmp_path / "grey.png", "--out",
                tmp_path / "grey_sr.png", "--restorer", "oracle", "--ground_truth", photo / "hr.png",
                "--faces", photo / "boxes.json")
    assert read_image_unchanged(tmp_path / "grey_sr.png").shape == (160, 160)


def test_restorer_of_the_wrong_architecture(workdir, photo, tmp_path):
    torch = pytest.importorskip("torch")
    torch.save({"params": {"conv_first.weight": torch.zeros(4, 3, 3, 3)}}, tmp_path / "not_gpen.pth")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(UserError, match="not_gpen.pth: not a GPEN-BFR-512"):
            run_cli(adapt.main, "adapt", "--checkpoint", workdir, "--input", photo / "lr.png", "--out",
                    tmp_path / "o.png", "--restorer", tmp_path / "not_gpen.pth", "--faces", photo / "boxes.json")
