"""The supervised gate: a segmentation + decision CNN trained from scratch on one domain.

It learns from the domain's training normals, its labelled defectives (pixel masks where the
format has them, boxes otherwise, the image label alone as the weakest supervision) and synthetic
anomalies pasted onto normals (`synthetic_anomalies`); with no labelled defective it trains on
synthetic anomalies alone (the cold start). Same contract as the other gates: `fit` holds out a
share of the normals, whose scores give the domain's mean/std for z; `score` returns
`GateScore(score, z, anomaly_map, region)`.

* Input: the grey image (mean of RGB) resized so its short side is `short_side` (default 128,
  about 1/4 of a KolektorSDD frame), both sides rounded to a multiple of 8, standardised by its
  own mean and std.
* Training: views are `crop` x `crop` working pixels (default 128; None: the smallest working
  size among the images) — cheaper steps, and measured better on KolektorSDD; a masked
  defective's crop is centred near a defect cell, an image-label-only one is cropped at random
  (with small images the crop is the whole image); each step draws
  half normals, half positives (a labelled defective or, with probability `synthetic_share` or
  always without labels, a normal with synthetic anomalies of `synthetic_kinds`); images are
  standardised whole, before cropping (as when scoring); random flips, and (`photometric`) blur,
  sensor noise and contrast drawn for every view alike, so that synthetic anomalies cannot be told
  apart by their grain. Loss = BCE of the 1/8-scale defect map (where a mask or box is known) +
  BCE of the image decision.
* Score: the decision logit (unbounded, so held-out normals have a spread to normalise against).
* Map: sigmoid of the segmentation logits, resized to the original image; `region` is the box
  (x1, y1, x2, y2 in original pixels) of the connected part of the map around its maximum.
* Engines: ONNX Runtime on CPU (`engine="onnx"`, default) or PyTorch; the ONNX graph is stored
  in the bundle, so reloaded scores are identical.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..contracts import GateScore
from ..errors import ConfigError, DataError
from ..imaging import MAX_ASPECT_RATIO
from .base import MIN_HOLDOUT, DomainStats, ImageLike, image_name, load_input, split_holdout
from .features import as_rgb_uint8
from .onnx_graph import OnnxEngine, export_onnx
from .segnet import DEFAULT_WIDTHS, STRIDE, build_segnet, count_parameters
from .synthetic_anomalies import DEFAULT_KINDS, KINDS, add_anomaly


@dataclass(frozen=True)
class LabelledDefective:
    """A defective training image: `mask` (HxW bool, original size) when known, else `boxes`
    (xyxy original pixels) when known, else only the image label. `group` names its source (e.g.
    ``neu-det``): with defectives of several sources, training draws a source evenly, then one of
    its defectives, so a large source does not drown a small one."""

    image: ImageLike
    mask: np.ndarray | None = None
    boxes: tuple[tuple[float, float, float, float], ...] = ()
    name: str | None = None
    group: str | None = None


def defectives_from_samples(samples, groups: Sequence[str] | None = None) -> list[LabelledDefective]:
    """`LabelledDefective`s of a reader's defective samples (mask loaded lazily at fit time);
    `groups` (parallel to `samples`) names each one's source."""
    out = []
    for i, s in enumerate(samples):
        if not s.defective:
            continue
        out.append(_SampleDefective(s, None if groups is None else groups[i]))
    return out


class _SampleDefective:
    """A reader `Sample` viewed as a `LabelledDefective` (mask loaded when first asked for)."""

    def __init__(self, sample, group: str | None = None):
        self.sample = sample
        self.group = group
        self.image = sample.image_path
        self.name = str(sample.image_path)
        self.boxes = tuple(tuple(b.as_list()) for b in sample.boxes)

    @property
    def mask(self):
        if not self.sample.has_mask:
            return None
        masks = self.sample.load_masks()
        if not masks:
            return None
        union = None
        for m in masks.values():
            union = m.copy() if union is None else (union | m)
        return union


def working_size8(height: int, width: int, short_side: int | None) -> tuple[int, int]:
    """(h, w) with the short side `short_side`, aspect kept, both rounded to a multiple of 8 (≥ 32)."""
    s = 1.0 if short_side is None else min(short_side / min(height, width),  # long side capped (thin strips)
                                           short_side * MAX_ASPECT_RATIO / max(height, width))
    return (max(32, int(round(height * s / STRIDE)) * STRIDE), max(32, int(round(width * s / STRIDE)) * STRIDE))


def to_grey(image: np.ndarray, short_side: int | None, name: str) -> np.ndarray:
    """Image -> float32 HxW grey in [0, 1] at the working scale (multiple of 8)."""
    import cv2

    arr = np.asarray(image)
    if not (arr.ndim == 2 and arr.dtype == np.uint8):  # a grey 8-bit frame skips the conversion
        arr = as_rgb_uint8(arr, name)
    h, w = working_size8(arr.shape[0], arr.shape[1], short_side)
    if (h, w) != arr.shape[:2]:  # resize the 8-bit image first: cheaper than resizing floats
        arr = cv2.resize(arr, (w, h), interpolation=cv2.INTER_AREA if h < arr.shape[0] else cv2.INTER_LINEAR)
    grey = arr.astype(np.float32) if arr.ndim == 2 else arr.astype(np.float32).mean(axis=2)
    return np.ascontiguousarray(grey * (1.0 / 255.0), dtype=np.float32)


def standardise(grey: np.ndarray) -> np.ndarray:
    return ((grey - grey.mean()) / max(float(grey.std()), 1e-3)).astype(np.float32)


def photometric(g: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Blur, sensor noise and contrast drawn at random for every training view alike, so that the
    network cannot tell synthetic anomalies from real pixels by their fine grain."""
    import cv2

    out = np.ascontiguousarray(g, dtype=np.float32)
    if rng.random() < 0.5:
        out = cv2.GaussianBlur(out, (0, 0), float(rng.uniform(0.3, 1.2)))
    if rng.random() < 0.5:
        out = out + rng.standard_normal(out.shape).astype(np.float32) * float(rng.uniform(0.05, 0.4))
    return (out * float(rng.uniform(0.8, 1.25))).astype(np.float32)


def _cells(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bool mask (any size) -> float32 target on the 1/8 grid of a working image of `shape`."""
    import cv2

    h, w = shape
    m = cv2.resize(mask.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
    gh, gw = h // STRIDE, w // STRIDE
    cells = m[:gh * STRIDE, :gw * STRIDE].reshape(gh, STRIDE, gw, STRIDE).max(axis=(1, 3))
    return (cells > 0.05).astype(np.float32)


def region_of(prob: np.ndarray, image_size: tuple[int, int]) -> tuple[float, float, float, float]:
    """Box (x1, y1, x2, y2, original pixels) of the connected cells ≥ half the maximum around it."""
    import cv2

    gh, gw = prob.shape
    top = float(prob.max())
    iy, ix = np.unravel_index(int(prob.argmax()), prob.shape)
    _, labels = cv2.connectedComponents((prob >= 0.5 * top).astype(np.uint8), connectivity=8)
    ys, xs = np.nonzero(labels == labels[iy, ix])
    h, w = image_size
    sy, sx = h / gh, w / gw
    return (float(xs.min() * sx), float(ys.min() * sy), float((xs.max() + 1) * sx), float((ys.max() + 1) * sy))


class SupervisedGate(OnnxEngine):
    """Layer-1 gate of one domain learned from normals, labelled defectives and synthetic anomalies."""

    kind = "supervised"

    def __init__(self, seed: int = 0, short_side: int | None = 128, widths=DEFAULT_WIDTHS,
                 steps: int = 300, batch_size: int = 8, lr: float = 1e-3, synthetic_share: float = 0.5,
                 max_defectives: int | None = None, crop: int | None = 128, holdout_fraction: float = 0.2,
                 min_holdout: int = MIN_HOLDOUT, k_sigma: float = 3.0, engine: str = "onnx",
                 threads: int | None = None, score_batch_size: int = 8, synthetic_kinds=DEFAULT_KINDS,
                 photometric: bool = True, ema: float | None = 0.98):
        if engine not in ("onnx", "torch"):
            raise ConfigError(f"engine must be 'onnx' or 'torch', not {engine!r}")
        if not 0.0 <= synthetic_share <= 1.0:
            raise ConfigError(f"synthetic_share must be in [0, 1], not {synthetic_share}")
        if max_defectives is not None and max_defectives < 0:
            raise ConfigError(f"max_defectives must be ≥ 0, not {max_defectives}")
        unknown = sorted(set(synthetic_kinds) - set(KINDS))
        if unknown or not synthetic_kinds:
            raise ConfigError(f"synthetic_kinds must name one or more of {', '.join(KINDS)}; got {list(synthetic_kinds)}")
        self.seed = seed
        self.short_side = short_side
        self.widths = tuple(int(w) for w in widths)
        self.steps = steps
        self.batch_size = batch_size
        self.lr = lr
        self.synthetic_share = synthetic_share
        self.max_defectives = max_defectives
        self.crop = crop
        self.holdout_fraction = holdout_fraction
        self.min_holdout = min_holdout
        self.k_sigma = k_sigma
        self.engine = engine
        self.threads = threads
        self.score_batch_size = score_batch_size
        self.synthetic_kinds = tuple(synthetic_kinds)
        self.photometric = photometric
        self.ema = ema

    def get_params(self) -> dict:
        keys = ("seed", "short_side", "widths", "steps", "batch_size", "lr", "synthetic_share",
                "max_defectives", "crop", "holdout_fraction", "min_holdout", "k_sigma", "engine", "threads",
                "score_batch_size", "synthetic_kinds", "photometric", "ema")
        p = {key: getattr(self, key) for key in keys}
        p["widths"] = list(self.widths)
        p["synthetic_kinds"] = list(self.synthetic_kinds)
        return p

    # -- fit ----------------------------------------------------------------------------------
    def fit(self, images: Sequence[ImageLike], names: Sequence[str] | None = None, domain: str = "domain",
            defectives: Sequence[LabelledDefective] = (),
            on_step: Callable[[int, int, float], None] | None = None) -> "SupervisedGate":
        """Train on the normals `images` (a share held out for the statistics) and `defectives`;
        `on_step(step, steps, loss)` is called after every training step (progress for people)."""
        import torch

        t0 = time.perf_counter()
        fit_idx, hold_idx = split_holdout(len(images), self.holdout_fraction, self.min_holdout,
                                          self.seed, what=domain)
        rng = np.random.default_rng(self.seed)
        defectives = list(defectives)
        self.defectives_available_ = len(defectives)
        if self.max_defectives is not None and len(defectives) > self.max_defectives:
            keep = np.sort(np.random.default_rng([self.seed, 0xDEF]).choice(
                len(defectives), self.max_defectives, replace=False))
            defectives = [defectives[i] for i in keep]
        self.defectives_used_ = [d.name or image_name(d.image, i) for i, d in enumerate(defectives)]
        normals = [standardise(to_grey(load_input(images[i], image_name(images[i], i, names)), self.short_side,
                                       image_name(images[i], i, names))) for i in fit_idx]
        pos, pos_masks, supervision = [], [], {"mask": 0, "boxes": 0, "image": 0}
        for i, d in enumerate(defectives):
            name = d.name or image_name(d.image, i)
            arr = load_input(d.image, name)
            grey = standardise(to_grey(arr, self.short_side, name))
            mask = d.mask
            if mask is None and d.boxes:
                mask = np.zeros(arr.shape[:2], bool)
                for x1, y1, x2, y2 in d.boxes:
                    mask[int(y1):int(np.ceil(y2)), int(x1):int(np.ceil(x2))] = True
                supervision["boxes"] += 1
            elif mask is not None:
                if np.asarray(mask).shape[:2] != arr.shape[:2]:
                    raise DataError(name, f"mask shape {np.asarray(mask).shape} differs from the image's {arr.shape[:2]}")
                supervision["mask" if np.asarray(mask).any() else "image"] += 1
                mask = mask if np.asarray(mask).any() else None
            else:
                supervision["image"] += 1
            pos.append(grey)
            pos_masks.append(None if mask is None else _cells(np.asarray(mask, bool), grey.shape))
        self.supervision_ = supervision
        groups = [getattr(d, "group", None) for d in defectives]
        by_group: list[list[int]] = []
        if len(set(groups)) > 1:  # several sources: draw a source evenly, then one of its defectives
            by_group = [[j for j, g in enumerate(groups) if g == key] for key in sorted(set(groups), key=str)]
            self.defectives_by_source_ = {str(key): len(idx) for key, idx in
                                          zip(sorted(set(groups), key=str), by_group)}
        shape = (min(g.shape[0] for g in normals + pos), min(g.shape[1] for g in normals + pos))
        if self.crop:  # square-ish crops: cheaper steps; a masked defective's crop holds its defect
            shape = (min(shape[0], self.crop), min(shape[1], self.crop))
        self.train_shape_ = shape
        gh, gw = shape[0] // STRIDE, shape[1] // STRIDE
        share = 1.0 if not pos else self.synthetic_share

        def crop(g, cells, y, x):
            out = g[y:y + shape[0], x:x + shape[1]]
            c = None if cells is None else cells[y // STRIDE:y // STRIDE + gh, x // STRIDE:x // STRIDE + gw]
            return out, c

        def draw(g, cells=None):
            ny, nx = (g.shape[0] - shape[0]) // STRIDE, (g.shape[1] - shape[1]) // STRIDE
            if cells is not None and cells.any() and (ny or nx):  # centre the crop on a defect cell
                ys, xs = np.nonzero(cells)
                k = int(rng.integers(len(ys)))
                y = int(np.clip(ys[k] - gh // 2 + rng.integers(-gh // 4, gh // 4 + 1), 0, ny)) * STRIDE
                x = int(np.clip(xs[k] - gw // 2 + rng.integers(-gw // 4, gw // 4 + 1), 0, nx)) * STRIDE
            else:
                y = int(rng.integers(0, ny + 1)) * STRIDE
                x = int(rng.integers(0, nx + 1)) * STRIDE
            return crop(g, cells, y, x)

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            model = build_segnet(self.widths)
        opt = torch.optim.AdamW(model.parameters(), lr=self.lr, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.lr, total_steps=max(1, self.steps),
                                                    pct_start=0.15)
        bce = torch.nn.functional.binary_cross_entropy_with_logits
        ema = None
        if self.ema:  # an exponential moving average of the weights (and BatchNorm statistics) is the model kept;
            # short runs average over fewer steps (decay ≤ 1 - 6/steps), so the start weighs < 0.3% at the end
            decay = min(float(self.ema), 1.0 - 6.0 / max(self.steps, 7))
            ema = torch.optim.swa_utils.AveragedModel(
                model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(decay), use_buffers=True)
        half = max(1, self.batch_size // 2)
        losses = []
        model.train()
        for _ in range(self.steps):
            xs, seg_t, seg_w, dec_t = [], [], [], []
            for _k in range(half):
                g, _ = draw(normals[int(rng.integers(len(normals)))])
                xs.append(g), seg_t.append(np.zeros((gh, gw), np.float32)), seg_w.append(1.0), dec_t.append(0.0)
            for _k in range(self.batch_size - half):
                if rng.random() < share:
                    g, _ = draw(normals[int(rng.integers(len(normals)))])
                    donor, _ = draw(normals[int(rng.integers(len(normals)))])
                    g, m = add_anomaly(g, rng, donor, kinds=self.synthetic_kinds)
                    cells = _cells(m, g.shape)
                    xs.append(g), seg_t.append(cells), seg_w.append(1.0), dec_t.append(1.0)
                else:
                    if by_group:
                        members = by_group[int(rng.integers(len(by_group)))]
                        j = members[int(rng.integers(len(members)))]
                    else:
                        j = int(rng.integers(len(pos)))
                    g, cells = draw(pos[j], pos_masks[j])
                    xs.append(g), dec_t.append(1.0)
                    seg_t.append(cells if cells is not None else np.zeros((gh, gw), np.float32))
                    seg_w.append(1.0 if cells is not None else 0.0)
            # flips: draw once per item for image and target together
            xb = np.empty((len(xs), 1, shape[0], shape[1]), np.float32)
            tb = np.empty((len(xs), 1, gh, gw), np.float32)
            for k, (g, t) in enumerate(zip(xs, seg_t)):
                if rng.random() < 0.5:
                    g, t = g[::-1], t[::-1]
                if rng.random() < 0.5:
                    g, t = g[:, ::-1], t[:, ::-1]
                xb[k, 0], tb[k, 0] = photometric(g, rng) if self.photometric else g, t
            x = torch.from_numpy(xb)
            dec, seg = model(x)
            w = torch.tensor(seg_w, dtype=torch.float32)
            seg_loss = (bce(seg, torch.from_numpy(tb), reduction="none").mean(dim=(1, 2, 3)) * w).sum() / w.sum().clamp_min(1)
            dec_loss = bce(dec, torch.tensor(dec_t, dtype=torch.float32))
            loss = seg_loss + dec_loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.item()))
            if on_step is not None:
                on_step(len(losses), self.steps, losses[-1])
            if ema is not None:
                ema.update_parameters(model)
        model = model if ema is None else ema.module
        model.eval()
        self.model_ = model
        self.train_losses_ = losses
        self.n_fit_images_ = len(fit_idx)
        self.train_seconds_ = time.perf_counter() - t0
        self.use_onnx(None)
        hold_names = [image_name(images[i], i, names) for i in hold_idx]
        self.holdout_scores_ = np.array(
            [s for s, _, _ in self._raw([images[i] for i in hold_idx], hold_names)], dtype=np.float64)
        self.stats_ = DomainStats.from_scores(self.holdout_scores_, what=domain, k_sigma=self.k_sigma)
        self.domain_ = domain
        return self

    # -- engines ------------------------------------------------------------------------------
    def _export_graph(self) -> bytes:
        """The network as ONNX (dynamic batch, height, width)."""
        import torch

        return export_onnx(self.model_.eval(), torch.zeros(1, 1, 64, 96), ["decision", "segmentation"],
                           {"image": {0: "b", 2: "h", 3: "w"}, "decision": {0: "b"},
                            "segmentation": {0: "b", 2: "gh", 3: "gw"}})

    def run_batch(self, x: np.ndarray, engine: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(B, 1, h, w) standardised batch -> (decision logits (B,), segmentation logits (B, 1, gh, gw))."""
        if (engine or self.engine) == "onnx":
            dec, seg = self.ort.run(None, {"image": np.ascontiguousarray(x, dtype=np.float32)})
            return dec, seg
        import torch

        with torch.inference_mode():
            dec, seg = self.model_(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
            return dec.numpy(), seg.numpy()

    # -- score --------------------------------------------------------------------------------
    def _raw(self, images, names, maps: bool = False, engine: str | None = None):
        """[(score, region, map or None)] in input order, batched by working size."""
        import cv2

        arrays = [load_input(img, n) for img, n in zip(images, names)]
        prepared = [standardise(to_grey(a, self.short_side, n)) for a, n in zip(arrays, names)]
        out: list = [None] * len(arrays)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, x in enumerate(prepared):
            groups.setdefault(x.shape, []).append(i)
        bs = max(1, int(self.score_batch_size))
        for idx in groups.values():
            for s in range(0, len(idx), bs):
                chunk = idx[s:s + bs]
                dec, seg = self.run_batch(np.stack([prepared[i] for i in chunk])[:, None], engine)
                for j, i in enumerate(chunk):
                    prob = 1.0 / (1.0 + np.exp(-seg[j, 0].astype(np.float64)))
                    size = arrays[i].shape[:2]
                    m = None
                    if maps:
                        m = cv2.resize(prob.astype(np.float32), (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
                    out[i] = (float(dec[j]), region_of(prob, size), m)
        return out

    def score(self, images: Sequence[ImageLike], names: Sequence[str] | None = None,
              maps: bool = False, engine: str | None = None) -> list[GateScore]:
        if not hasattr(self, "model_"):
            raise ConfigError("this SupervisedGate is not fitted: call fit() or load it from a bundle")
        names = [image_name(img, i, names) for i, img in enumerate(images)]
        res = self._raw(list(images), names, maps=maps, engine=engine)
        z = self.stats_.z(np.array([s for s, _, _ in res]))
        return [GateScore(score=s, z=float(zi), anomaly_map=m, region=r) for (s, r, m), zi in zip(res, z)]

    def summary(self) -> dict:
        return {
            "kind": self.kind,
            "fit_images": int(self.n_fit_images_),
            "parameters": count_parameters(self.model_),
            "defectives_available": int(getattr(self, "defectives_available_", 0)),
            "defectives_used": len(getattr(self, "defectives_used_", [])),
            "supervision": dict(getattr(self, "supervision_", {})),
            **({"defectives_by_source": dict(self.defectives_by_source_)}
               if getattr(self, "defectives_by_source_", None) else {}),
            "train_shape": list(getattr(self, "train_shape_", [])),
            "train_seconds": round(float(getattr(self, "train_seconds_", 0.0)), 2),
            "final_train_loss": float(np.mean(self.train_losses_[-10:])) if self.train_losses_ else None,
            "stats": self.stats_.to_dict(),
            "threshold": self.stats_.threshold,
            **({"out_of_fold": {"folds": self.out_of_fold_["folds"],
                                "defectives": int(sum(self.out_of_fold_["defective"])),
                                "normals": int(len(self.out_of_fold_["defective"]) - sum(self.out_of_fold_["defective"]))}}
               if getattr(self, "out_of_fold_", None) else {}),
        }

    # -- bundle -------------------------------------------------------------------------------
    def write_files(self, folder, write_part=None) -> dict:
        """Weights and ONNX graph into `folder`; returns extra config entries."""
        import torch

        torch.save(self.model_.state_dict(), folder / "model.pt")
        (folder / "segnet.onnx").write_bytes(self.onnx_bytes())
        extra = {"defectives_used": list(self.defectives_used_)}
        if getattr(self, "out_of_fold_", None):  # gate.out_of_fold: evidence for `calibrate`
            extra["out_of_fold"] = self.out_of_fold_
        return extra

    def read_files(self, folder, config: dict, load_part=None) -> None:
        import torch

        model = build_segnet(self.widths)
        model.load_state_dict(torch.load(folder / "model.pt", map_location="cpu", weights_only=True))
        self.model_ = model.eval()
        self.use_onnx((folder / "segnet.onnx").read_bytes())
        summary = config.get("summary", {})
        self.train_losses_ = []
        self.n_fit_images_ = summary.get("fit_images", 0)
        self.defectives_available_ = summary.get("defectives_available", 0)
        self.defectives_used_ = list(config.get("defectives_used", []))
        self.out_of_fold_ = config.get("out_of_fold")
        self.supervision_ = summary.get("supervision", {})
        self.defectives_by_source_ = summary.get("defectives_by_source", {})
        self.train_shape_ = summary.get("train_shape", [])
        self.train_seconds_ = summary.get("train_seconds", 0.0)
