"""Datasets for the search: Fashion-MNIST (Debian's dataset-fashion-mnist), an image folder
(one sub-folder per class) or an .npz file.

Everything becomes a Dataset of uint8 images (N, H, W, C) and int labels, with a
validation split carved from the training data (the search chooses on it) and a test split
that only reports the final figure and is never used to choose anything.
"""
from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mcunet.errors import McunetError
from mcunet.host import quantize_with

FASHION_DIRS = [Path(os.environ.get("MCUNET_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))]
FASHION_CLASSES = ["t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                   "sneaker", "bag", "ankle boot"]
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff"}


@dataclass
class Split:
    x: np.ndarray  # uint8 (N, H, W, C)
    y: np.ndarray  # int32 (N,)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, n: int, seed: int = 0) -> "Split":
        if n >= len(self):
            return self
        idx = np.random.default_rng(seed).permutation(len(self))[:n]
        return Split(self.x[idx], self.y[idx])


@dataclass
class Dataset:
    name: str
    classes: list[str]
    train: Split
    val: Split
    test: Split | None
    source: str = ""
    notes: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.train.x.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.classes)


# -- readers ------------------------------------------------------------------------------


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST's format), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise McunetError(f"cannot read {path}: {exc}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise McunetError(f"{path} is not an IDX file of unsigned bytes")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise McunetError(f"{path} is truncated ({arr.size} of {int(np.prod(dims))} values)")
    return arr.reshape(dims)


def _find_idx(folder: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (folder / name).exists():
            return folder / name
    raise McunetError(f"{folder} has no {stem}(.gz)")


def load_fashion_mnist() -> tuple[Split, Split]:
    for folder in FASHION_DIRS:
        if folder.is_dir():
            break
    else:
        raise McunetError("Fashion-MNIST is not installed: `apt-get install dataset-fashion-mnist` "
                          "(IDX files in /usr/share/datasets/fashion-mnist), or set "
                          "MCUNET_FASHION_MNIST to a folder holding them")
    parts = []
    for prefix in ("train", "t10k"):
        x = read_idx(_find_idx(folder, f"{prefix}-images-idx3-ubyte"))
        y = read_idx(_find_idx(folder, f"{prefix}-labels-idx1-ubyte"))
        parts.append(Split(x[..., None], y.astype(np.int32)))
    return parts[0], parts[1]


def load_npz(path: Path) -> tuple[Split, Split | None, list[str] | None]:
    """Keys x_train, y_train (required), x_test, y_test, classes (optional); or x, y."""
    try:
        with np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise McunetError(f"{path} is not a readable .npz file ({exc})") from None
    xk, yk = ("x_train", "y_train") if "x_train" in d else ("x", "y")
    if xk not in d or yk not in d:
        raise McunetError(f"{path} needs arrays x_train and y_train (or x and y); it has "
                          f"{', '.join(sorted(d)) or 'none'}")

    def split(x, y) -> Split:
        x = np.asarray(x)
        if x.ndim == 3:
            x = x[..., None]
        if x.ndim != 4 or len(x) != len(y):
            raise McunetError(f"{path}: images must be (N, H, W[, C]) with one label each; got "
                              f"{x.shape} and {np.shape(y)}")
        if x.dtype != np.uint8:  # floats in [0, 1] or other ints in [0, 255]
            x = np.clip(x * (255.0 if x.dtype.kind == "f" and x.max() <= 1.0 else 1.0), 0, 255)
            x = np.round(x).astype(np.uint8)
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] > 1:  # one-hot
            y = y.argmax(1)
        if y.dtype.kind not in "iub" or y.size != len(x):
            raise McunetError(f"{path}: labels must be one integer class index per image (or "
                              f"one-hot rows); got {y.dtype} {y.shape}")
        return Split(x, y.reshape(-1).astype(np.int32))

    train = split(d[xk], d[yk])
    test = split(d["x_test"], d["y_test"]) if "x_test" in d and "y_test" in d else None
    if test is not None and test.x.shape[1:] != train.x.shape[1:]:
        raise McunetError(f"{path}: test images are {test.x.shape[1:]}, training images "
                          f"{train.x.shape[1:]}")
    classes = [str(c) for c in d["classes"]] if "classes" in d else None
    return train, test, classes


def load_folder(path: Path, size: int | None = None) -> tuple[Split, list[str]]:
    """One sub-folder per class; images are resized to size x size (default: the longer side
    of the first image) and kept grey if every image is grey. Each file is opened, read and
    closed in turn, so folders of any size stay within the open-file limit."""
    from PIL import Image

    classes = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise McunetError(f"{path} needs one sub-folder per class (at least two); found "
                          f"{len(classes)}")
    files = [(f, i) for i, c in enumerate(classes) for f in sorted((path / c).rglob("*"))
             if f.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise McunetError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {path}")
    def read(f: Path, mode: str | None):
        """(mode, pixels) of one image, closed once read; decode errors name the file."""
        try:
            with Image.open(f) as im:  # the header only, until convert() decodes
                if mode is None:
                    return "L" if im.mode in ("L", "1", "I", "I;16", "LA") else "RGB", None
                return mode, np.asarray(im.convert(mode).resize((size, size), Image.BILINEAR))
        except (OSError, ValueError) as exc:
            raise McunetError(f"cannot read image {f}: {exc}") from None

    # First pass: grey only if every image is; the size, if not given, that of the first image
    # (made square, the longer side).
    modes = {read(f, None)[0] for f, _ in files}
    mode = "L" if modes == {"L"} else "RGB"
    grey = mode == "L"
    if size is None:
        with Image.open(files[0][0]) as first:
            size = max(first.size)
    xs = [read(f, mode)[1] for f, _ in files]
    x = np.stack(xs)
    if grey:
        x = x[..., None]
    return Split(x.astype(np.uint8), np.array([i for _, i in files], dtype=np.int32)), classes


def load_dataset(spec: str, val_fraction: float = 0.1, seed: int = 0) -> Dataset:
    """'fashion-mnist', a folder of class sub-folders, or an .npz file."""
    name = spec
    classes: list[str] | None = None
    test: Split | None = None
    if spec.lower().replace("_", "-") in ("fashion-mnist", "fashion", "fmnist"):
        name, source = "fashion-mnist", str(FASHION_DIRS[0])
        train, test = load_fashion_mnist()
        classes = FASHION_CLASSES
    else:
        path = Path(spec)
        source = str(path)
        if path.is_dir():
            full, classes = load_folder(path)
            # A folder has no separate test split: hold out a fixed part of it.
            train, test = _split(full, 0.1, seed + 1)
        elif path.suffix == ".npz" and path.is_file():
            train, test, classes = load_npz(path)
        elif not path.exists():
            raise McunetError(f"unknown dataset '{spec}': give fashion-mnist, a folder with one "
                              "sub-folder per class, or an .npz file")
        else:
            raise McunetError(f"{spec} is neither a folder of class sub-folders nor an .npz file")
        name = path.stem or path.name
    n_cls = int(max(train.y.max(), test.y.max() if test is not None else 0)) + 1
    classes = classes or [str(i) for i in range(n_cls)]
    lowest = min(train.y.min(), test.y.min() if test is not None else 0)
    if lowest < 0 or n_cls > len(classes):
        raise McunetError(f"labels must be 0..{len(classes) - 1}")
    if len(train) < 20:
        raise McunetError(f"{spec} has only {len(train)} training images; need at least 20")
    train, val = _split(train, val_fraction, seed)
    return Dataset(name=name, classes=classes, train=train, val=val, test=test, source=source)


def _split(data: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """A seeded random split: (rest, held out)."""
    idx = np.random.default_rng(seed).permutation(len(data))
    n = max(1, int(round(len(data) * fraction)))
    held, rest = idx[:n], idx[n:]
    return Split(data.x[rest], data.y[rest]), Split(data.x[held], data.y[held])


def prepare(x: np.ndarray, resolution: int) -> np.ndarray:
    """uint8 images -> float32 in [0, 1] at resolution x resolution (bilinear), as the
    exported model expects (model.json records this)."""
    x = x.astype(np.float32) / 255.0
    if x.shape[1] != resolution or x.shape[2] != resolution:
        x = resize_bilinear(x, resolution)
    return x


def resize_bilinear(x: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize with half-pixel centres (as tf.image.resize and PIL), in numpy."""
    n, h, w, c = x.shape

    def axis(src: int):
        pos = (np.arange(size) + 0.5) * src / size - 0.5
        pos = np.clip(pos, 0, src - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, src - 1)
        return lo, hi, (pos - lo).astype(np.float32)

    y0, y1, fy = axis(h)
    x0, x1, fx = axis(w)
    top = x[:, y0] * (1 - fy)[None, :, None, None] + x[:, y1] * fy[None, :, None, None]
    return (top[:, :, x0] * (1 - fx)[None, None, :, None] + top[:, :, x1] * fx[None, None, :, None]
            ).astype(np.float32)


def model_inputs(images: np.ndarray, shape: tuple[int, ...],
                 input_range: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """uint8 images (N, H, W, C) as the float inputs of a model whose input has `shape`
    (1, h, w, c), or (1, h*w*c) for a flattened one: resized (bilinear), grey repeated to
    colour or colour averaged to grey, and scaled from [0, 255] to input_range."""
    lo, hi = input_range
    x = images.astype(np.float32)
    if len(shape) == 4:
        h, w, c = shape[1:]
        if c != x.shape[3]:
            if x.shape[3] == 1:
                x = np.repeat(x, c, axis=3)
            elif c == 1:
                x = x.mean(axis=3, keepdims=True)
            else:
                raise McunetError(f"the images have {x.shape[3]} channels and the model wants {c}")
        if (h, w) != x.shape[1:3]:
            if h != w:
                raise McunetError(f"the model's input is {h}x{w}: mcunet resizes images to a "
                                  "square input only; resize them yourself into an .npy")
            x = resize_bilinear(x, h)
    elif len(shape) == 2:
        if int(np.prod(x.shape[1:])) != shape[1]:
            raise McunetError(f"images of {x.shape[1]}x{x.shape[2]}x{x.shape[3]} do not flatten "
                              f"to the model's {shape[1]} inputs")
        x = x.reshape(len(x), -1)
    else:
        raise McunetError(f"the model's input shape {tuple(shape)} is not an image "
                          "(1, h, w, c) or a flat vector (1, n); give an .npy of its inputs")
    return (lo + x * ((hi - lo) / 255.0)).astype(np.float32)


def calibration_inputs(spec: str, shape: tuple[int, ...], samples: int = 200,
                       input_range: tuple[float, float] = (0.0, 1.0), seed: int = 0) -> np.ndarray:
    """What TF's converter calibrates on: an .npy of float inputs (N, *shape[1:]), or a
    dataset's training images as the model takes them (model_inputs)."""
    if spec.endswith(".npy"):
        try:
            x = np.load(spec, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise McunetError(f"{spec} is not a readable .npy file ({exc})") from None
        if x.dtype.kind != "f" or tuple(x.shape[1:]) != tuple(shape[1:]):
            raise McunetError(f"{spec} holds {x.dtype} {x.shape}; calibration wants float "
                              f"inputs (N, {', '.join(map(str, shape[1:]))})")
        return x[:samples].astype(np.float32)
    ds = load_dataset(spec, seed=seed)
    return model_inputs(ds.train.subset(samples, seed).x, shape, input_range)


# Labelled rows for on-device training (mcunet train-on-device, train-plan,
# scripts/bench_training.py): the dataset as arrays, and rows as the model's int8 input.

def parse_classes(spec: str | None) -> list[int] | None:
    """--classes: '5-9' or '0,2,4' as a list of distinct class numbers (None: all)."""
    if not spec:
        return None
    found: list[int] = []
    try:
        for part in spec.split(","):
            lo, _, hi = part.partition("-")
            found += list(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise McunetError(f"--classes {spec!r}: give class numbers like 5-9 or 0,2,4") from None
    if not found or len(set(found)) != len(found) or min(found) < 0:
        raise McunetError(f"--classes {spec!r}: give distinct class numbers like 5-9 or 0,2,4")
    return found


def load_training_data(spec: str, classes: list[int] | None = None
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test) of fashion-mnist (Debian's dataset-fashion-mnist) or
    an .npz holding x_train, y_train, x_test, y_test (or x, y: the last fifth is held out).
    With classes, only their rows, relabelled 0.. in the order given."""
    if spec.lower().replace("_", "-") in ("fashion-mnist", "fashion", "fmnist"):
        train, test = load_fashion_mnist()
        arrays = (train.x, train.y, test.x, test.y)
    else:
        path = Path(spec)
        if path.suffix != ".npz" or not path.is_file():
            raise McunetError(f"--dataset {spec}: no such .npz file; give fashion-mnist or an "
                              ".npz holding x_train, y_train, x_test, y_test (or x, y)")
        try:
            with np.load(path) as data:
                keys = set(data.files)
                if {"x_train", "y_train", "x_test", "y_test"} <= keys:
                    arrays = tuple(data[k] for k in ("x_train", "y_train", "x_test", "y_test"))
                elif {"x", "y"} <= keys:
                    x, y = data["x"], data["y"]
                    cut = len(x) - max(1, len(x) // 5)
                    arrays = (x[:cut], y[:cut], x[cut:], y[cut:])
                else:
                    raise McunetError(f"{spec} holds {', '.join(sorted(keys))}; give x_train, "
                                      "y_train, x_test, y_test (or x, y)")
        except (OSError, ValueError) as exc:
            raise McunetError(f"cannot read {spec}: {exc}") from None
    x_train, y_train, x_test, y_test = arrays
    y_train, y_test = y_train.astype(np.int64).reshape(-1), y_test.astype(np.int64).reshape(-1)
    if classes is not None:
        relabel = {c: k for k, c in enumerate(classes)}

        def pick(x, y):
            keep = np.isin(y, classes)
            return x[keep], np.array([relabel[int(v)] for v in y[keep]], np.int64)

        x_train, y_train = pick(x_train, y_train)
        x_test, y_test = pick(x_test, y_test)
        if not len(x_train):
            raise McunetError(f"--dataset {spec} has no training rows of classes {classes}")
    return x_train, y_train, x_test, y_test


def as_model_input(x: np.ndarray, compiled) -> np.ndarray:
    """Rows as the model's int8 input: int8 as they are, uint8 images as x/255 and floats as
    real values, quantised with the input's scale and zero point."""
    t = compiled.graph.t(compiled.graph.inputs[0])
    if x.dtype == np.int8:
        q = x
    elif t.quant is None:
        raise McunetError("the model's input has no quantisation parameters")
    else:
        real = x.astype(np.float64) / 255.0 if x.dtype == np.uint8 else x.astype(np.float64)
        q = quantize_with(real, float(t.quant.s), int(t.quant.zp), "int8")
    if int(np.prod(q.shape[1:])) != t.size:
        raise McunetError(f"the dataset's rows have shape {q.shape[1:]}; the model's input is "
                          f"{tuple(t.shape[1:])}")
    return q.reshape((len(q),) + tuple(t.shape[1:]))


def epoch_order(n: int, epochs: int, seed: int) -> np.ndarray:
    """The order in which `epochs` passes over n training samples visit them, each pass
    reshuffled. train-plan and train-on-device both take it from here (and the same samples
    from the same draw), so the scheme train-plan measures on the host is trained step for
    step as the device will train it: only the rows it is scored on differ."""
    rng = np.random.default_rng([seed, 1])  # a stream of its own, apart from the sample draw
    return np.concatenate([rng.permutation(n) for _ in range(epochs)])
