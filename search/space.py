"""The search space: MobileNetV2-style networks of inverted-residual (MB) blocks.

A network is a stem (3x3 conv), a first depthwise-separable block, then stages of MB blocks
(1x1 expand, kxk depthwise, 1x1 project; a residual when shape allows), global average
pooling and a classifier. Per block the kernel size and expand ratio are free, per stage the
depth, and globally a width multiplier and the input resolution.

An Arch stores a kernel and an expand ratio for every *possible* block (OFA style), so
mutation and crossover work position by position; blocks past a stage's depth are inactive
and ignored (``SearchSpace.key`` names only what is active).
"""
from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field, replace

from mcunet.errors import McunetError


def make_divisible(value: float, divisor: int = 8, minimum: int | None = None) -> int:
    """MobileNet's channel rounding: nearest multiple of divisor, never below 90% of value."""
    minimum = minimum or divisor
    rounded = max(minimum, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


@dataclass(frozen=True)
class Stage:
    channels: int  # output channels at width 1.0
    max_depth: int
    stride: int  # of the stage's first block
    min_depth: int = 1


@dataclass(frozen=True)
class SearchSpace:
    """What may vary and the fixed skeleton it varies on. Defaults suit 28x28 grey images."""
    in_channels: int = 1
    num_classes: int = 10
    native_resolution: int = 28  # the dataset's own image size (for docs and resize)
    stem_channels: int = 16
    stem_stride: int = 2
    first_channels: int = 8  # the expand-1 depthwise-separable block after the stem
    stages: tuple[Stage, ...] = (Stage(16, 2, 1), Stage(24, 3, 2), Stage(40, 3, 2),
                                 Stage(64, 2, 1))
    head_channels: int = 0  # a 1x1 conv before pooling (0: none)
    kernel_choices: tuple[int, ...] = (3, 5, 7)
    expand_choices: tuple[int, ...] = (3, 4, 6)
    width_choices: tuple[float, ...] = (0.35, 0.5, 0.75, 1.0, 1.25)
    resolution_choices: tuple[int, ...] = (20, 24, 28, 32)
    divisor: int = 8

    @property
    def num_blocks(self) -> int:
        return sum(s.max_depth for s in self.stages)

    def channels(self, base: int, width: float) -> int:
        return make_divisible(base * width, self.divisor)

    def restrict(self, width: float, resolution: int) -> "SearchSpace":
        """The space with width and resolution fixed (after stage-1 optimisation)."""
        return replace(self, width_choices=(width,), resolution_choices=(resolution,))

    # -- sampling --------------------------------------------------------------------------

    def sample(self, rng: random.Random, width: float | None = None,
               resolution: int | None = None) -> "Arch":
        return Arch(
            width=width if width is not None else rng.choice(self.width_choices),
            resolution=resolution if resolution is not None else rng.choice(self.resolution_choices),
            depths=tuple(rng.randint(s.min_depth, s.max_depth) for s in self.stages),
            kernels=tuple(rng.choice(self.kernel_choices) for _ in range(self.num_blocks)),
            expands=tuple(rng.choice(self.expand_choices) for _ in range(self.num_blocks)))

    def largest(self, width: float | None = None, resolution: int | None = None) -> "Arch":
        return Arch(width=width if width is not None else max(self.width_choices),
                    resolution=resolution if resolution is not None else max(self.resolution_choices),
                    depths=tuple(s.max_depth for s in self.stages),
                    kernels=(max(self.kernel_choices),) * self.num_blocks,
                    expands=(max(self.expand_choices),) * self.num_blocks)

    def smallest(self, width: float | None = None, resolution: int | None = None) -> "Arch":
        return Arch(width=width if width is not None else min(self.width_choices),
                    resolution=resolution if resolution is not None else min(self.resolution_choices),
                    depths=tuple(s.min_depth for s in self.stages),
                    kernels=(min(self.kernel_choices),) * self.num_blocks,
                    expands=(min(self.expand_choices),) * self.num_blocks)

    def mutate(self, arch: "Arch", rng: random.Random, prob: float = 0.1) -> "Arch":
        """Resample each gene with probability prob (width and resolution too, when free)."""
        def pick(current, choices):
            return rng.choice(choices) if rng.random() < prob else current
        return Arch(width=pick(arch.width, self.width_choices),
                    resolution=pick(arch.resolution, self.resolution_choices),
                    depths=tuple(pick(d, tuple(range(s.min_depth, s.max_depth + 1)))
                                 for d, s in zip(arch.depths, self.stages)),
                    kernels=tuple(pick(k, self.kernel_choices) for k in arch.kernels),
                    expands=tuple(pick(e, self.expand_choices) for e in arch.expands))

    def crossover(self, a: "Arch", b: "Arch", rng: random.Random) -> "Arch":
        """Each gene from either parent."""
        def mix(x, y):
            return tuple(rng.choice(p) for p in zip(x, y))
        return Arch(width=rng.choice((a.width, b.width)),
                    resolution=rng.choice((a.resolution, b.resolution)),
                    depths=mix(a.depths, b.depths), kernels=mix(a.kernels, b.kernels),
                    expands=mix(a.expands, b.expands))

    def check(self, arch: "Arch") -> None:
        if len(arch.depths) != len(self.stages) or len(arch.kernels) != self.num_blocks \
                or len(arch.expands) != self.num_blocks:
            raise McunetError(f"architecture {arch.key} does not belong to this search space "
                              f"({len(self.stages)} stages, {self.num_blocks} blocks)")

    # -- the concrete layers of an architecture ---------------------------------------------

    def blocks(self, arch: "Arch") -> list["Block"]:
        """The active blocks of arch, in order, with their channel counts and strides."""
        self.check(arch)
        w = arch.width
        cin = self.channels(self.stem_channels, w)
        first = self.channels(self.first_channels, w)
        out = [Block(cin, first, kernel=3, expand=1, stride=1, stage=-1, index=-1, residual=False)]
        cin = first
        pos = 0
        for si, (stage, depth) in enumerate(zip(self.stages, arch.depths)):
            cout = self.channels(stage.channels, w)
            for j in range(stage.max_depth):
                if j < depth:
                    out.append(Block(cin, cout, kernel=arch.kernels[pos + j],
                                     expand=arch.expands[pos + j],
                                     stride=stage.stride if j == 0 else 1, stage=si, index=pos + j,
                                     residual=j > 0))
                    cin = cout
            pos += stage.max_depth
        return out

    def stem_out(self, arch: "Arch") -> int:
        return self.channels(self.stem_channels, arch.width)

    def last_channels(self, arch: "Arch") -> int:
        if self.head_channels:
            return self.channels(self.head_channels, max(1.0, arch.width))
        return self.channels(self.stages[-1].channels, arch.width)

    def key(self, arch: "Arch") -> str:
        """Equal for architectures that build the same network."""
        return arch.canonical(self).key

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SearchSpace":
        d = dict(d)
        d["stages"] = tuple(Stage(**s) for s in d["stages"])
        for k in ("kernel_choices", "expand_choices", "width_choices", "resolution_choices"):
            d[k] = tuple(d[k])
        return cls(**d)


@dataclass(frozen=True)
class Block:
    cin: int
    cout: int
    kernel: int
    expand: int
    stride: int
    stage: int  # -1 for the first (expand-1) block
    index: int  # position in Arch.kernels/expands, -1 for the first block
    # Every block but a stage's first adds its input (shapes always match there, at every
    # width, which keeps the supernet's structure the same for all sub-networks).
    residual: bool = False

    @property
    def hidden(self) -> int:
        return self.cin * self.expand


@dataclass(frozen=True)
class Arch:
    width: float
    resolution: int
    depths: tuple[int, ...]
    kernels: tuple[int, ...] = field(default=())
    expands: tuple[int, ...] = field(default=())

    @property
    def key(self) -> str:
        """A compact name of every gene (use SearchSpace.key to name the network built)."""
        return (f"w{self.width:g}_r{self.resolution}_d{''.join(map(str, self.depths))}_"
                f"k{''.join(map(str, self.kernels))}_e{''.join(map(str, self.expands))}")

    def canonical(self, space: SearchSpace) -> "Arch":
        """The same network with inactive genes set to the smallest choices (for dedup)."""
        kernels, expands, pos = list(self.kernels), list(self.expands), 0
        for d, s in zip(self.depths, space.stages):
            for j in range(d, s.max_depth):
                kernels[pos + j] = min(space.kernel_choices)
                expands[pos + j] = min(space.expand_choices)
            pos += s.max_depth
        return replace(self, kernels=tuple(kernels), expands=tuple(expands))

    def to_dict(self) -> dict:
        return {"width": self.width, "resolution": self.resolution, "depths": list(self.depths),
                "kernels": list(self.kernels), "expands": list(self.expands)}

    @classmethod
    def from_dict(cls, d: dict) -> "Arch":
        return cls(width=float(d["width"]), resolution=int(d["resolution"]),
                   depths=tuple(int(x) for x in d["depths"]),
                   kernels=tuple(int(x) for x in d["kernels"]),
                   expands=tuple(int(x) for x in d["expands"]))

    def __str__(self) -> str:
        return json.dumps(self.to_dict())


def default_space(in_channels: int = 1, num_classes: int = 10, native_resolution: int = 28) -> SearchSpace:
    """Sensible defaults per task: small grey images get the default skeleton; larger colour
    images a deeper one with higher resolutions (as MCUNet's ImageNet-style space)."""
    if native_resolution <= 40:
        res = tuple(r for r in (20, 24, 28, 32) if r <= max(32, native_resolution + 4))
        return SearchSpace(in_channels=in_channels, num_classes=num_classes,
                           native_resolution=native_resolution, resolution_choices=res)
    return SearchSpace(
        in_channels=in_channels, num_classes=num_classes, native_resolution=native_resolution,
        stages=(Stage(16, 2, 2), Stage(24, 3, 2), Stage(40, 3, 2), Stage(64, 3, 2),
                Stage(96, 2, 1)),
        width_choices=(0.35, 0.5, 0.75, 1.0), resolution_choices=(48, 64, 80, 96, 112, 128))
