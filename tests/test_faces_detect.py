"""MTCNN (sslsr.models.mtcnn, sslsr.weights.facenet, sslsr.faces.detect) and face alignment
(sslsr.faces.align): network parity with a PyTorch rebuild on the wheel's real weights, the whole
detection on astronaut() against a NumPy/PyTorch reference of facenet-pytorch's box stages, the
torch-free .pt reader, alignment round trips, and the grey / tiny / corrupt-file cases."""

import collections

import jax.numpy as jnp
import numpy as np
import pytest
import skimage.color
import skimage.data

from sslsr.errors import InputError, UserError
from sslsr.faces import align, detect
from sslsr.faces.detect import Face, detect_faces
from sslsr.weights import facenet
from sslsr.weights.pytorch import to_torch_state_dict

torch = pytest.importorskip("torch")
F = torch.nn.functional

from tests.torch_refs import mtcnn as ref  # noqa: E402

pytestmark = pytest.mark.torch
NAMES = ("pnet", "rnet", "onet")

try:  # the weights ship in the facenet-pytorch wheel, installed --no-deps by `make install`
    facenet.weights_path("pnet")
except UserError as e:
    pytest.skip(str(e), allow_module_level=True)


@pytest.fixture(scope="module")
def torch_nets():
    # One thread: these small convs only lose to thread start-up on a shared CPU.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield {n: ref.load(n, facenet.weights_path(n)) for n in NAMES}
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def astronaut():
    return skimage.data.astronaut()


@pytest.fixture(scope="module")
def faces(astronaut):
    return detect_faces(astronaut)


def _torch_out(net, x_nhwc):
    with torch.no_grad():
        outs = net(torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2))))
    return [o.numpy().transpose(0, 2, 3, 1) if o.ndim == 4 else o.numpy() for o in outs]


def _assert_parity(ours, theirs):
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        a = np.asarray(a)[tuple(slice(n) for n in b.shape)]  # PNet: the real image's outputs
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=1e-4 * max(1.0, np.abs(b).max()))


@pytest.mark.parametrize("hw", [(64, 64), (37, 46)])
def test_pnet_parity_with_real_weights(torch_nets, hw):
    # The jitted PNet detect_faces runs: levels zero-padded to 64 x 64 and told their real size.
    # 37 - 2 is odd: ceil-mode pooling's partial border window must still match.
    x = np.zeros((1, 64, 64, 3), np.float32)
    x[:, :hw[0], :hw[1]] = np.random.default_rng(0).uniform(-1, 1, (1, *hw, 3))
    ours = detect._networks()[0](x, (jnp.int32(hw[0]), jnp.int32(hw[1])))
    _assert_parity(ours, _torch_out(torch_nets["pnet"], x[:, :hw[0], :hw[1]]))


@pytest.mark.parametrize("index, name, size", [(1, "rnet", 24), (2, "onet", 48)])
def test_rnet_onet_parity_with_real_weights(torch_nets, index, name, size):
    x = np.random.default_rng(index).uniform(-1, 1, (16, size, size, 3)).astype(np.float32)
    _assert_parity(detect._networks()[index](x), _torch_out(torch_nets[name], x))


# --- a reference of facenet-pytorch's detect_face: torch area resizing and networks, NumPy boxes ---

def _ref_nms(b, threshold, smaller=False):
    one = 1.0 if smaller else 0.0
    area = (b[:, 2] - b[:, 0] + one) * (b[:, 3] - b[:, 1] + one)
    dropped, keep = np.zeros(len(b), bool), []
    for i in np.argsort(-b[:, 4], kind="stable"):
        if dropped[i]:
            continue
        keep.append(i)
        iw = np.clip(np.minimum(b[i, 2], b[:, 2]) - np.maximum(b[i, 0], b[:, 0]) + one, 0, None)
        ih = np.clip(np.minimum(b[i, 3], b[:, 3]) - np.maximum(b[i, 1], b[:, 1]) + one, 0, None)
        inter = iw * ih
        dropped |= inter / (np.minimum(area[i], area) if smaller else area[i] + area - inter) > threshold
    return np.array(keep, int)


def _ref_rerec(b):
    b = b.copy()
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    side = np.maximum(w, h)
    b[:, 0] += w / 2 - side / 2
    b[:, 1] += h / 2 - side / 2
    b[:, 2], b[:, 3] = b[:, 0] + side, b[:, 1] + side
    return b


def _ref_bbreg(b, reg):
    b = b.copy()
    w, h = b[:, 2] - b[:, 0] + 1, b[:, 3] - b[:, 1] + 1
    b[:, :4] += reg * np.stack([w, h, w, h], 1)
    return b


def _ref_crops(t_img, b, size):
    h, w = t_img.shape[2:]
    out, kept = [], []
    for k, (x0, y0, x1, y1) in enumerate(np.trunc(b[:, :4]).astype(int)):
        x0, y0, x1, y1 = max(x0, 1), max(y0, 1), min(x1, w), min(y1, h)
        if y1 > y0 - 1 and x1 > x0 - 1:
            kept.append(k)
            out.append(F.interpolate(t_img[:, :, y0 - 1:y1, x0 - 1:x1], size=(size, size), mode="area"))
    return kept, (torch.cat(out) - 127.5) * 0.0078125


def _reference_detect(img, nets, thresholds=(0.6, 0.7, 0.7)):
    t_img = torch.from_numpy(img).permute(2, 0, 1)[None].float()
    h, w = img.shape[:2]
    scales, scale, short = [], 12.0 / 20, min(h, w) * 12.0 / 20
    while short >= 12:
        scales.append(scale)
        scale, short = scale * 0.709, short * 0.709
    levels = []
    with torch.no_grad():
        for s in scales:
            x = F.interpolate(t_img, size=(int(h * s + 1), int(w * s + 1)), mode="area")
            reg, prob = nets["pnet"]((x - 127.5) * 0.0078125)
            p = prob[0, 1]
            ys, xs = torch.nonzero(p >= thresholds[0], as_tuple=True)
            cell = torch.stack([xs, ys], 1).float()
            b = torch.cat([((2 * cell + 1) / s).floor(), ((2 * cell + 12) / s).floor(), p[ys, xs, None],
                           reg[0][:, ys, xs].T], 1).numpy()
            levels.append(b[_ref_nms(b, 0.5)])
        b = np.concatenate(levels)
        b = b[_ref_nms(b, 0.7)]
        w_, h_ = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        b = _ref_rerec(np.stack([b[:, 0] + b[:, 5] * w_, b[:, 1] + b[:, 6] * h_,
                                 b[:, 2] + b[:, 7] * w_, b[:, 3] + b[:, 8] * h_, b[:, 4]], 1))
        proposals = b
        kept, crops = _ref_crops(t_img, b, 24)
        reg, prob = (o.numpy() for o in nets["rnet"](crops))
        ok = prob[:, 1] > thresholds[1]
        b = np.concatenate([b[kept][ok, :4], prob[ok, 1:]], 1)
        pick = _ref_nms(b, 0.7)
        b = _ref_rerec(_ref_bbreg(b[pick], reg[ok][pick]))
        kept, crops = _ref_crops(t_img, b, 48)
        reg, marks, prob = (o.numpy() for o in nets["onet"](crops))
    ok = prob[:, 1] > thresholds[2]
    b = np.concatenate([b[kept][ok, :4], prob[ok, 1:]], 1)
    reg, marks = reg[ok], marks[ok]
    bw, bh = b[:, 2:3] - b[:, 0:1] + 1, b[:, 3:4] - b[:, 1:2] + 1
    points = np.stack([bw * marks[:, :5] + b[:, 0:1] - 1, bh * marks[:, 5:] + b[:, 1:2] - 1], 2)
    b = _ref_bbreg(b, reg)
    pick = _ref_nms(b, 0.7, smaller=True)
    return b[pick], points[pick], proposals


def test_astronaut_one_plausible_face(faces):
    assert len(faces) == 1 and isinstance(faces[0], Face)
    f = faces[0]
    assert f.box.shape == (4,) and f.landmarks.shape == (5, 2) and f.score >= 0.9
    x0, y0, x1, y1 = f.box
    assert 60 < x1 - x0 < 150 and 60 < y1 - y0 < 150 and 150 < (x0 + x1) / 2 < 300 and 40 < (y0 + y1) / 2 < 200
    (lx, ly), (rx, ry), (nx, ny), (mlx, mly), (mrx, mry) = f.landmarks
    assert lx < nx < rx and mlx < mrx and max(ly, ry) < ny < min(mly, mry)
    assert np.all((f.landmarks >= f.box[:2]) & (f.landmarks <= f.box[2:]))


def test_astronaut_matches_reference_pipeline(astronaut, faces, torch_nets):
    boxes, points, proposals = _reference_detect(astronaut, torch_nets)
    # stage 1 (PNet over the pyramid, both NMS, regression, squaring): the same candidates
    scales = detect._pyramid(512, 512, 20, 0.709)
    ours = detect._propose(detect._networks()[0], astronaut.astype(np.float32), scales, 0.6)
    assert ours.shape == proposals.shape and len(ours) > 50
    np.testing.assert_allclose(ours, proposals, atol=1e-2)
    boxes, points = boxes[boxes[:, 4] >= 0.9], points[boxes[:, 4] >= 0.9]
    assert len(boxes) == len(faces) == 1
    np.testing.assert_allclose(faces[0].box, boxes[0, :4], atol=1.0)
    np.testing.assert_allclose(faces[0].landmarks, points[0], atol=1.0)
    assert abs(faces[0].score - boxes[0, 4]) < 1e-3


def test_grey_image_is_read_as_rgb(astronaut, faces):
    grey = np.round(skimage.color.rgb2gray(astronaut) * 255).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, 2)
    np.testing.assert_array_equal(detect._rgb(grey[..., None]), rgb)
    got = detect_faces(grey)
    assert len(got) == 1
    np.testing.assert_allclose(got[0].box, faces[0].box, atol=8)  # the same face


def test_tiny_and_faceless_images_give_no_faces():
    assert detect_faces(np.zeros((15, 40, 3), np.uint8)) == []  # 15 * 12/20 < 12: no pyramid level
    assert detect_faces(np.full((40, 50, 3), 128, np.uint8)) == []
    with pytest.raises(InputError, match="uint8"):
        detect_faces(np.zeros((40, 40, 3), np.float32))
    with pytest.raises(InputError, match="shape"):
        detect_faces(np.zeros((40, 40, 4), np.uint8))


# --- the .pt reader ---

def test_reader_matches_torch_load_and_the_modules_export_it_back(torch_nets):
    for name in NAMES:
        path = facenet.weights_path(name)
        ours, theirs = facenet.read_state_dict(path), torch.load(path, weights_only=True)
        assert list(ours) == list(theirs)
        for k in ours:
            np.testing.assert_array_equal(ours[k], theirs[k].numpy())
        exported = to_torch_state_dict(facenet.load_network(name), facenet.NETWORKS[name])
        torch_nets[name].load_state_dict({k: torch.from_numpy(v) for k, v in exported.items()}, strict=True)
        assert sorted(exported) == sorted(ours) and all(np.array_equal(exported[k], ours[k]) for k in ours)


def test_reader_zip_format_and_strides(tmp_path):
    sd = {"t": torch.arange(12.0).reshape(3, 4).t(), "view": torch.arange(10, dtype=torch.int64)[3:7]}
    torch.save(sd, tmp_path / "x.pt")
    got = facenet.read_state_dict(tmp_path / "x.pt")
    for k in sd:
        np.testing.assert_array_equal(got[k], sd[k].numpy())


def test_corrupt_or_foreign_files_give_one_line(tmp_path):
    truncated = tmp_path / "pnet.pt"
    truncated.write_bytes(facenet.weights_path("pnet").read_bytes()[:5000])
    torch.save({"w": torch.ones(2), "evil": collections.Counter()}, tmp_path / "foreign.pt")
    for path in (truncated, tmp_path / "foreign.pt", tmp_path / "missing.pt"):
        with pytest.raises(InputError) as e:
            facenet.load_network("pnet", path)
        assert str(e.value).startswith(str(path)) and "\n" not in str(e.value)
    with pytest.raises(InputError, match="rnet.pt: .*does not fit") as e:
        facenet.load_network("pnet", facenet.weights_path("rnet"))
    assert "\n" not in str(e.value)


def test_missing_wheel_says_how_to_install(monkeypatch):
    monkeypatch.setattr(facenet, "DISTRIBUTION", "no-such-distribution")
    with pytest.raises(UserError, match="pip install --no-deps facenet-pytorch"):
        facenet.weights_path("onet")


# --- alignment ---

def test_similarity_transform_recovers_a_similarity():
    rng = np.random.default_rng(2)
    src = rng.uniform(0, 100, (5, 2))
    angle, s, t = 0.3, 1.7, np.array([12.0, -5.0])
    rot = s * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    np.testing.assert_allclose(align.similarity_transform(src, src @ rot.T + t), np.c_[rot, t], atol=1e-9)


def test_scale_affine_maps_upscaled_pixels_to_the_same_face_pixels():
    affine = np.array([[1.3, 0.2, -40.0], [-0.2, 1.3, 7.0]])
    p = np.array([[10.0, 20.0], [150.0, 33.0]])
    for s in (2, 4):
        q = s * (p + 0.5) - 0.5
        np.testing.assert_allclose(np.c_[q, np.ones(2)] @ align.scale_affine(affine, s).T, np.c_[p, np.ones(2)] @ affine.T)


def test_align_then_warp_back_reproduces_the_face(astronaut, faces):
    image = astronaut.astype(np.float32) / 255
    face, affine = align.align_face(astronaut, faces[0].landmarks, 256)
    assert face.shape == (256, 256, 3) and face.dtype == np.float32
    # the landmarks land near the template (a similarity cannot fit 5 points exactly)
    moved = np.c_[faces[0].landmarks, np.ones(5)] @ affine.T
    assert np.abs(moved - align.face_template(256)).max() < 16
    inside = align.warp_back(align.paste_mask(256), affine, image.shape[:2]) > 0.999
    assert inside.sum() > 10000
    back = align.warp_back(face, affine, image.shape[:2])
    assert np.abs(back - image)[inside].mean() < 0.02
    # at x2 (an SR output), against the bilinear x2 of the photo
    up = align._warp(image, np.array([[2.0, 0, 0.5], [0, 2.0, 0.5]]), (1024, 1024))  # bilinear x2
    inside2 = align.warp_back(align.paste_mask(256), affine, (1024, 1024), scale=2) > 0.999
    assert np.abs(align.warp_back(face, affine, (1024, 1024), scale=2) - up)[inside2].mean() < 0.02
    pasted = align.paste_face(astronaut, np.zeros_like(face), affine)
    outside = align.warp_back(align.paste_mask(256), affine, image.shape[:2]) == 0
    assert pasted.dtype == np.float32 and np.all(pasted[inside] < 1e-3)
    assert np.array_equal(pasted[outside], image[outside])
