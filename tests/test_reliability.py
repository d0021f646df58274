"""Bad input never costs data or a traceback (issue 18): safe outputs, checkpoint fallback, one-line
errors. The cases and exit codes are tabulated in docs/reliability.md."""

import errno
import hashlib
import math
import os
import pathlib
import signal
import subprocess
import sys
import warnings

import numpy as np
import pytest

from sslsr import cli
from sslsr.data import datasets, io, masks
from sslsr.data.pipeline import make_train_loader
from sslsr.edges import edge_mask
from sslsr.errors import InputError, UserError

REPO = pathlib.Path(__file__).resolve().parents[1]


def _run(*args, preexec_fn=None):
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, cwd=REPO,
                          preexec_fn=preexec_fn)


def _one_error_line(r, starts: str) -> str:
    """The process failed with exit 2 and exactly one stderr line `error: <starts>...`."""
    lines = [ln for ln in r.stderr.replace("\r", "\n").splitlines() if "error: " in ln]  # not the progress bars
    assert r.returncode == 2, (r.returncode, r.stderr[-3000:])
    assert "Traceback" not in r.stderr and len(lines) == 1, r.stderr[-3000:]
    line = lines[0][lines[0].index("error: "):]
    assert line.startswith(f"error: {starts}"), r.stderr[-3000:]
    return line


def _digest(folder: pathlib.Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def photo():
    from skimage import data

    return np.ascontiguousarray(data.chelsea()[100:148, 150:214])  # 48 x 64


def _truncate(path: pathlib.Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])  # the header survives, decoding fails


# ----------------------------------------------------------------------------- masks: data loss


def test_masks_never_write_into_or_over_their_input_folder(tmp_path, photo):
    hr = tmp_path / "HR"
    io.write_png(hr / "a.png", photo)
    io.write_png(hr / "b.png", photo[::-1])
    before = _digest(hr)
    _one_error_line(_run("-m", "sslsr.data.masks", hr, hr, "--overwrite"), str(hr))
    _one_error_line(_run("-m", "sslsr.data.masks", hr, hr), str(hr))
    _one_error_line(_run("-m", "sslsr.data.masks", hr, hr / "masks"), str(hr / "masks"))
    assert _digest(hr) == before  # not one input replaced, no mask added beside the photos


def test_images_sharing_a_name_would_share_one_mask_refused(tmp_path, photo):
    hr = tmp_path / "HR"
    io.write_png(hr / "a.png", photo)
    from PIL import Image

    Image.fromarray(photo[::-1]).save(hr / "a.jpg", quality=95)
    line = _one_error_line(_run("-m", "sslsr.data.masks", hr, tmp_path / "m"), "")
    assert "a.jpg" in line and "a.png" in line
    assert not (tmp_path / "m").exists()
    # The training loader's mask lookup has the same rule.
    with pytest.raises(InputError, match=r"a\.jpg.*a\.png|a\.png.*a\.jpg"):
        make_train_loader(hr_dir=hr, mask_dir=tmp_path / "m2", scale=2, patch_size=8, batch_size=1, shard=(0, 1))


@pytest.mark.parametrize("bad", [math.nan, -1.0, math.inf])
def test_edge_thresholds_nan_negative_inf_rejected(bad, photo):
    with pytest.raises(ValueError, match="threshold"):
        edge_mask(photo, threshold=bad)


def test_masks_cli_bad_threshold_and_bad_image(tmp_path, photo):
    hr = tmp_path / "HR"
    for name in ("a", "b", "c"):
        io.write_png(hr / f"{name}.png", photo)
    for value in ("nan", "-1", "inf"):
        _one_error_line(_run("-m", "sslsr.data.masks", hr, tmp_path / "m", "--threshold", value), "--threshold")
    assert not (tmp_path / "m").exists()
    _truncate(hr / "b.png")
    line = _one_error_line(_run("-m", "sslsr.data.masks", hr, tmp_path / "m"), str(hr))
    assert "b.png" in line and "1 of 3" in line
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["a.png", "c.png"]  # the rest were written


def test_full_disk_or_file_too_large_is_one_line(tmp_path, photo):
    """A real EFBIG: the file-size limit of the masks process is below one mask PNG."""
    import resource

    hr = tmp_path / "HR"
    io.write_png(hr / "a.png", np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (100, 100))

    line = _one_error_line(_run("-m", "sslsr.data.masks", hr, tmp_path / "m", preexec_fn=limit), "")
    assert os.strerror(errno.EFBIG) in line
    assert not list((tmp_path / "m").iterdir())  # no partial file, no temporary left


def test_wrapped_storage_errors_are_one_line():
    inner = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/ckpt/7/g")
    try:
        try:
            raise inner
        except OSError as e:
            raise RuntimeError("tensorstore: write failed") from e
    except RuntimeError as outer:
        assert cli.error_line(outer) == f"/ckpt/7/g: {os.strerror(errno.ENOSPC)}"
    assert cli.error_line(RuntimeError("a bug")) is None  # bugs keep their traceback


# ----------------------------------------------------------------------------- prepare


def test_prepare_rejects_bad_flags_and_extreme_sizes_up_front(tmp_path, photo):
    src = tmp_path / "in"
    io.write_png(src / "a.png", photo)
    for flag in ("--step", "--crop"):
        _one_error_line(_run("-m", "sslsr.data.prepare", "subimages", src, tmp_path / "o", flag, "0"), flag)
    _one_error_line(_run("-m", "sslsr.data.prepare", "subimages", src, src, "--crop", "16"), str(src))
    # Nothing to crop: an error, not "wrote 0 sub-images" with exit 0.
    _one_error_line(_run("-m", "sslsr.data.prepare", "subimages", src, tmp_path / "o", "--crop", "512"), str(src))
    # A 3 x 4000 strip would become a 682,666 x 512 PNG: refused before anything is written.
    io.write_png(tmp_path / "strip" / "s.png", np.zeros((3, 4000, 3), np.uint8))
    line = _one_error_line(_run("-m", "sslsr.data.prepare", "multiscale", tmp_path / "strip", tmp_path / "ms"), "")
    assert "s.png" in line and "16:1" in line
    assert not (tmp_path / "ms").exists()


# ----------------------------------------------------------------------------- training data


def test_training_images_are_decoded_before_training_or_skipped(tmp_path, photo):
    hr = tmp_path / "HR"
    for name in ("a", "b", "c"):
        io.write_png(hr / f"{name}.png", photo)
    _truncate(hr / "b.png")
    kw = dict(hr_dir=hr, scale=2, patch_size=8, batch_size=1, use_mask=False, shard=(0, 1))
    with pytest.raises(InputError, match=r"HR/b\.png: cannot read image"):
        make_train_loader(**kw, verify_images=True)
    with pytest.warns(UserWarning, match=r"skipping 1 of 3 unreadable .*b\.png"):
        it = iter(make_train_loader(**kw, skip_bad=True))
    for _ in range(6):  # every remaining image reads
        next(it)
    (hr / "a.png").write_bytes(b"not an image")  # an unreadable header too
    with pytest.warns(UserWarning):
        records = datasets.folder_records(hr, skip_bad=True)
    with pytest.warns(UserWarning, match=r"b\.png"):
        assert [r.name for r in datasets.verify_records(records, skip_bad=True)] == ["c"]


def test_config_rejects_non_finite_numbers():
    from sslsr.train import config as config_lib

    for field, value, name in [
        ("data.edge_threshold", math.nan, "data.edge_threshold"),
        ("data.edge_threshold", math.inf, "data.edge_threshold"),
        ("data.edge_threshold", -1.0, "data.edge_threshold"),
        ("loss.ssl_weight", math.inf, "loss.ssl_weight"),
    ]:
        c = config_lib.demo(config_lib.base_config())
        section, key = field.split(".")
        c[section][key] = value
        with pytest.raises(config_lib.ConfigError, match=rf"config\.{name}"):
            config_lib.validate(c)


# ----------------------------------------------------------------------------- checkpoints


def _tiny_run_config(steps: int):
    import importlib.util

    spec = importlib.util.spec_from_file_location("esrgan", REPO / "configs" / "esrgan.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    c = mod.get_config("demo")
    c.generator.kwargs.update(num_feat=8, num_block=1, num_grow_ch=4)
    c.discriminator.kwargs.num_feat = 2
    c.data.hr_patch = 32
    c.data.val = ""
    c.train.batch_size = 2
    c.train.total_steps = steps
    c.train.pretrain_steps = 1
    c.train.milestones = (1,)
    c.loss.perceptual_weight = 0.0
    c.log.every = 1
    c.log.ckpt_every = 1
    c.log.keep = 3
    return c


def _break_step(workdir: pathlib.Path, step: int) -> None:
    """Truncates every data file of a checkpoint step (orbax still lists it as committed)."""
    for f in (workdir / "checkpoints" / str(step)).rglob("*"):
        if f.is_file() and f.name not in ("_CHECKPOINT_METADATA", "commit_success.txt"):
            _truncate(f, 0.3)


def test_checkpoint_fallback_signal_exit_and_failed_resume_keeps_config(tmp_path, monkeypatch):
    from sslsr.train import loop, restore_generator, train_and_evaluate
    from sslsr.weights import checkpoints as ckpt_lib

    wd = tmp_path / "wd"
    result = train_and_evaluate(_tiny_run_config(2), str(wd))
    assert result.stopped_by is None
    _break_step(wd, 2)

    # Readers (eval, upscale, init_from) fall back to step 1 with one warning naming step 2.
    with pytest.warns(UserWarning, match=r"checkpoints/2: checkpoint does not restore.*using step 1"):
        restore_generator(str(wd))
    with pytest.raises(UserError, match=r"checkpoints/2: checkpoint does not restore"):
        restore_generator(str(wd / "checkpoints" / "2"))  # the step asked for: no silent substitute

    # The trainer resumes from step 1, keeps the broken step aside (not deleted) and is stopped
    # by SIGTERM after one step: the result says so (train.py exits 143).
    real = loop.sharding.global_batch

    def sigterm_first(batch, mesh):
        os.kill(os.getpid(), signal.SIGTERM)
        monkeypatch.setattr(loop.sharding, "global_batch", real)
        return real(batch, mesh)

    monkeypatch.setattr(loop.sharding, "global_batch", sigterm_first)
    with pytest.warns(UserWarning, match=r"checkpoints/2: checkpoint does not restore"):
        result = train_and_evaluate(_tiny_run_config(3), str(wd))
    assert result.stopped_by == signal.SIGTERM
    assert (wd / "checkpoints_broken").is_dir() and list((wd / "checkpoints_broken").iterdir())
    assert ckpt_lib.Checkpointer(str(wd)).manager.all_steps() == [1, 2]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new step 2 restores: no warning
        restore_generator(str(wd))

    # A resume that cannot work (the architecture changed) fails before config.json is touched.
    config_before = (wd / "config.json").read_bytes()
    changed = _tiny_run_config(3)
    changed.generator.kwargs.num_block = 2
    with pytest.raises(UserError, match=r"checkpoints: no checkpoint restores"):
        train_and_evaluate(changed, str(wd))
    assert (wd / "config.json").read_bytes() == config_before
    restore_generator(str(wd))  # the workdir still loads
    assert ckpt_lib.Checkpointer(str(wd)).manager.all_steps() == [1, 2]  # nothing moved or deleted


def test_train_cli_config_errors_and_signal_exit(tmp_path):
    cases = [
        (("--config", "configs/esrgan.py:bogus"), "configs/esrgan.py: unknown variant 'bogus'"),
        (("--config", "configs/esrgan.py:demo", "--config.train.totl_steps=3"), "--config.train.totl_steps"),
        (("--config", "configs/missing.py"), "--config: "),
    ]
    for args, starts in cases:
        _one_error_line(_run("train.py", *args, "--workdir", tmp_path / "wd"), starts)
    assert not (tmp_path / "wd").exists()
    # train.py maps a run stopped by SIGTERM to exit status 143 (128 + 15).
    code = (
        "import sys, runpy; import sslsr.train as t; from sslsr.train.loop import TrainResult;"
        "t.train_and_evaluate = lambda c, w: TrainResult({}, 15);"
        f"sys.argv = ['train.py', '--config', 'configs/esrgan.py:demo', '--workdir', {str(tmp_path / 'w2')!r}];"
        "runpy.run_path('train.py', run_name='__main__')"
    )
    assert _run("-c", code).returncode == 143


# ----------------------------------------------------------------------------- eval and weights


def test_eval_checks_metrics_before_the_model_and_names_the_image(tmp_path):
    r = _run("eval.py", "--checkpoint", tmp_path / "missing.pth", "--arch", "RRDBNet", "--datasets", "demo",
             "--metrics", "psnr,psnx", "--out", tmp_path / "o")
    _one_error_line(r, "--metrics: unknown 'psnx'")
    from sslsr import evaluate

    io.write_png(tmp_path / "Tiny" / "HR" / "dot.png", np.zeros((8, 8, 3), np.uint8))
    up = lambda x: np.repeat(np.repeat(np.asarray(x), 4, axis=1), 4, axis=2)  # noqa: E731
    with pytest.raises(UserError, match=r"Tiny/dot: crop_border=4 leaves nothing"):
        evaluate.evaluate(up, ["Tiny"], scale=4, data_root=tmp_path, out_dir=tmp_path / "o", metrics=["psnr"],
                          progress=False, log=lambda s: None)
    r = _run("eval.py", "--checkpoint", tmp_path / "missing.pth", "--arch", "RRDBNet", "--datasets", "Tiny",
             "--data_root", tmp_path, "--metrics", "psnr", "--out", tmp_path / "Tiny" / "HR" / "out")
    _one_error_line(r, str(tmp_path / "Tiny" / "HR" / "out"))


def test_param_key_fallback_says_which_key_was_loaded():
    from sslsr.weights import pytorch

    sd = {"conv.weight": np.zeros((1, 1, 1, 1), np.float32)}
    with pytest.warns(UserWarning, match=r"has no 'params' weights; loaded 'params_ema'"):
        assert set(pytorch.load_state_dict({"params_ema": sd}, "params")) == {"conv.weight"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pytorch.load_state_dict({"params": sd, "params_ema": sd}, "params")
        pytorch.load_state_dict({"state_dict": sd}, "params")  # KAIR's wrapper: nothing to say
