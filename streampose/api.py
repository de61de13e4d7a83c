"""The library entry points: `load_model` and `PoseEstimator`."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from streampose import backends, models
from streampose.backends import Backend, BackendUnavailable, EngineError, Job
from streampose.checkpoint import Checkpoint, CheckpointError, check_joints, load
from streampose.decode import decode, pose_score, unflip_heatmaps
from streampose.geometry import PIXELS_PER_SCALE, box_to_center_scale, center_scale_to_box, crop_transform
from streampose.joints import PERSON, JointSet
from streampose.pose import Pose, most_confident
from streampose.preprocess import Image, preprocess

if TYPE_CHECKING:
    from streampose.crop import Crop, Detector
    from streampose.detector import PersonDetector

Box = tuple[float, float, float, float]


def model_file(path_or_name: str | os.PathLike[str]) -> Path:
    """The checkpoint file of a shipped name (`hg2-lite`, `hg2`, `person-det`) or a path; a one-line error if
    there is none."""
    name = os.fspath(path_or_name)
    preset = models.PRESETS.get(name)
    if preset is None:
        if not Path(name).exists():
            raise CheckpointError(
                f"{name!r} is neither a checkpoint file nor a model name; names: {', '.join(models.PRESETS)}"
            )
        return Path(name)
    weights = preset.weights(name)
    if not weights.is_file():
        raise CheckpointError(
            f"no trained weights for {name!r} are installed ({weights} is missing); "
            "train one with `streampose train` and pass its path, or use pretrained=False (--untrained)"
        )
    return weights


def shipped_int8(name: str | os.PathLike[str]) -> Path | None:
    """The int8 engine shipped beside a named model, if there is one and it was built from the weights installed
    (an engine left from earlier weights is not used)."""
    preset = models.PRESETS.get(os.fspath(name))
    if preset is None or not (engine := preset.int8(os.fspath(name))).is_file():
        return None
    from streampose.backends import meta

    try:
        built_from = meta.read(engine, verify_files=False).source.get("sha256")
    except EngineError:
        return None
    return engine if built_from == meta.sha256(preset.weights(os.fspath(name))) else None


def cpu_engines(model: str | os.PathLike[str]) -> list[tuple[Path, str]]:
    """The OpenVINO engines (IR, precision) that `auto` chooses among on the CPU for a model by name or checkpoint
    path, the preferred first: its IR in bf16 (fp32 where the CPU lacks it), then its shipped int8 engine."""
    from streampose.backends.openvino_backend import ir_of_file

    engines = [(ir_of_file(model_file(model)), backends.fastest_cpu_precision())]
    if (int8 := shipped_int8(model)) is not None:
        engines.append((int8, "int8"))
    return engines


def load_model(
    path_or_name: str | os.PathLike[str] = models.DEFAULT,
    joints: JointSet | str | None = None,
    pretrained: bool = True,
) -> Checkpoint:
    """A model by shipped name (`hg2-lite`, `hg2`) or checkpoint path.

    `pretrained=False` builds a named model with fresh (untrained) weights, for training or for
    checking the plumbing; its keypoints are meaningless.
    """
    name = os.fspath(path_or_name)
    preset = models.PRESETS.get(name)
    if preset is not None and not pretrained:
        ckpt = Checkpoint(config=preset.config, joints=preset.joints, metadata={"name": name, "trained": False})
        if joints is not None:
            check_joints(ckpt, joints, name)
        return ckpt
    return load(model_file(name), joints=joints)


def open_backend(model: Checkpoint | str | os.PathLike[str] = models.DEFAULT, backend: str = "auto",
                 device: str = "cpu", jobs: int = 1, threads: int = 0) -> Backend:
    """A backend (see `backends.create`) for a model by name, checkpoint path, loaded checkpoint or engine. On the
    CPU with OpenVINO, a checkpoint file converted before runs from its cached IR, found by the file's hash: the
    start reads no checkpoint and imports no torch. `auto` on the CPU runs a shipped model in bf16 (fp32 where the
    CPU lacks it), or from its shipped int8 engine where that runs faster on this CPU (timed once per machine:
    `openvino_backend.fastest`)."""
    if isinstance(model, Checkpoint) or backends.is_engine(model):
        return backends.create(backend, model, device=device, jobs=jobs, threads=threads)
    if backend in ("auto", "openvino") and device == "cpu" and backends.installed()["openvino"]:
        from streampose.backends.openvino_backend import fastest, ir_of_file

        try:
            if backend == "openvino":
                return backends.create("openvino", ir_of_file(model_file(model)), jobs=jobs, threads=threads)
            return fastest(cpu_engines(model), jobs=jobs, threads=threads)
        except BackendUnavailable:
            if backend == "openvino":
                raise
    return backends.create(backend, load_model(model), device=device, jobs=jobs, threads=threads)


@dataclass(frozen=True)
class Prepared:
    """One frame's network input and the geometry to map its heatmaps back to frame pixels."""

    input: npt.NDArray[np.float32]
    """(3, S, S) normalised crop."""
    transform: npt.NDArray[np.float64]
    """(2, 3) frame -> crop affine."""
    box: Box
    """The crop square in frame pixels."""


def submit_heatmaps(backend: Backend, batch: npt.NDArray[np.float32], flip: bool = False) -> Job:
    """Start a batch (see `Backend.submit`); with `flip`, its mirror too, and the job averages the two
    (the flip test, which costs a second pass and usually gains a point or two of PCK)."""
    plain = backend.submit(batch)
    if not flip:
        return plain
    mirrored = backend.submit(np.ascontiguousarray(batch[..., ::-1]))
    return lambda: 0.5 * (plain() + unflip_heatmaps(mirrored(), backend.info.joints.flip))


def infer_heatmaps(backend: Backend, batch: npt.NDArray[np.float32], flip: bool = False) -> npt.NDArray[np.float32]:
    """Heatmaps for a batch, with the flip test if asked (see `submit_heatmaps`)."""
    return submit_heatmaps(backend, batch, flip)()


def center_crop(width: int, height: int) -> tuple[npt.NDArray[np.float64], float]:
    """The paper's centered person: the square of side min(1.25 h, max(w, h)) centred in the frame.

    A person filling the frame height then sits at the training scale (crop side = 1.25 x the
    person's extent); wide frames lose their sides, square and portrait frames are taken whole."""
    side = min(1.25 * height, max(width, height))
    return np.array([(width - 1) / 2.0, (height - 1) / 2.0]), side / PIXELS_PER_SCALE


def _stacked(inputs: Sequence[npt.NDArray[np.float32]]) -> npt.NDArray[np.float32]:
    """The crops as one batch; a single crop as a view (np.stack's copy of a 256-px crop costs ~0.8 ms)."""
    return inputs[0][None] if len(inputs) == 1 else np.stack(inputs)


class PoseEstimator:
    """Frames in, poses out: crop, run the network, decode back to frame pixels.

    >>> est = PoseEstimator("hg2-lite")
    >>> poses = est.find(frame_bgr)           # whoever the person detector finds (most confident first)
    >>> pose = est(frame_bgr)                 # the centered person (see `center_crop`)
    >>> pose = est(frame_bgr, box=(x, y, w, h))  # a person box; the crop is 1.25x its longer side

    The streaming runtime uses the two halves separately, `prepare` (per frame, in its
    preprocessing stage) and `infer` (per batch, in its inference stage).
    """

    def __init__(
        self,
        model: Checkpoint | str | os.PathLike[str] = models.DEFAULT,
        backend: str | Backend = "auto",
        device: str = "cpu",
        box_margin: float = 1.25,
        flip: bool = False,
        jobs: int = 1,
        detector: Detector | None = None,
        threads: int = 0,
    ) -> None:
        """`model`: a loaded checkpoint, a model name or checkpoint path, or an engine built by
        `streampose build`; `backend`: auto (the fastest that works here), torch, onnxruntime, openvino or
        tensorrt, or an open `Backend` (then `model` and `jobs` are ignored); `flip`: average with the
        mirrored image (twice the compute); `jobs`: batches run side by side where the backend can (see
        `backends.create`; 1, the default, gives each call the shortest wait); `detector`: what `find` finds people
        with: an open `PersonDetector` or any function of a frame giving boxes (M, 5) x, y, w, h, score, best first
        (the caller closes it; default: `person-det`, opened on first use and closed with this);
        `threads`: CPU threads of the backend (0: every core; see `backends.create`)."""
        self.backend = backend if isinstance(backend, Backend) else open_backend(model, backend, device, jobs, threads)
        if self.backend.info.joints.name == PERSON.name:  # its one heatmap would pass for a one-joint skeleton
            what = "this backend's model" if isinstance(backend, Backend) else f"{model}"
            if not isinstance(backend, Backend):
                self.backend.close()
            raise ValueError(f"{what} is a person detector, not a pose model: pass a pose model (e.g. "
                             f"{models.DEFAULT}); the detector goes to --detector")
        self.box_margin = box_margin
        self.flip = flip
        self._detector_backend = backend if isinstance(backend, str) else "auto"
        self._device = device
        self._detector: Detector | None = detector
        self._own_detector: PersonDetector | None = None

    @property
    def joints(self) -> JointSet:
        return self.backend.info.joints

    @property
    def max_batch(self) -> int:
        """Frames per backend call (half the backend's limit with the flip test)."""
        return max(1, self.backend.info.max_batch // 2) if self.flip else self.backend.info.max_batch

    def __call__(self, frame: Image, box: Box | None = None) -> Pose:
        return self.estimate([frame], None if box is None else [box])[0]

    def prepare(self, frame: Image, center: npt.ArrayLike, scale: float) -> Prepared:
        """The network input for the crop (center, scale) of one frame: one warp, then normalisation."""
        info = self.backend.info
        transform = crop_transform(center, scale, info.input_size)
        x = preprocess([frame], transform[None], info.input_size, info.normalization)[0]
        b = center_scale_to_box(center, scale)
        return Prepared(x, transform, (float(b[0]), float(b[1]), float(b[2]), float(b[3])))

    def infer(self, prepared: Sequence[Prepared]) -> list[Pose]:
        """Poses for prepared crops, run in batches of at most `max_batch` (side by side where the backend can)."""
        jobs = [self.submit(prepared[i:i + self.max_batch]) for i in range(0, len(prepared), self.max_batch)]
        return [pose for job in jobs for pose in job()]

    def submit(self, prepared: Sequence[Prepared]) -> Callable[[], list[Pose]]:
        """Start one batch (at most `max_batch` crops); calling the result waits for it and decodes the poses."""
        if not 1 <= len(prepared) <= self.max_batch:
            raise ValueError(f"a batch holds 1..{self.max_batch} crops, got {len(prepared)}")
        job = submit_heatmaps(self.backend, _stacked([p.input for p in prepared]), self.flip)
        info = self.backend.info

        def poses() -> list[Pose]:
            kps = decode(job(), np.stack([p.transform for p in prepared]), stride=info.stride)
            return [Pose(kp, p.box, float(score), info.joints) for kp, p, score in zip(kps, prepared, pose_score(kps),
                                                                                        strict=True)]
        return poses

    def find(self, frame: Image, people: int = 1, refine: bool = True, candidates: int | None = None) -> list[Pose]:
        """The poses of the `people` most plausible people the person detector finds in the frame (ranked with
        their poses: `candidates` more are posed, default `crop.CANDIDATES`; as
        `streampose run` finds them on an image, with a second look at each where `refine`; none when no one is
        there), best first. The detector (`person-det` unless one was given) is opened on first use."""
        from streampose.crop import CANDIDATES, DetectCrop
        from streampose.detector import open_detector
        from streampose.people import find

        if self._detector is None:
            self._detector = self._own_detector = open_detector(backend=self._detector_backend, device=self._device)
        return find(self, DetectCrop(self._detector, people, refine, CANDIDATES if candidates is None else candidates),
                    frame)

    def look_again(self, people: Sequence[tuple[Image, Pose, Sequence[Crop]]]) -> list[Pose]:
        """Each person's pose (in its frame) after further looks at them in these crops (all in one run of the
        network): joint by joint the most confident look (`pose.most_confident`); a person with no crops keeps
        their pose."""
        looks = [(i, frame, c) for i, (frame, _, crops) in enumerate(people) for c in crops]
        more = self.infer([self.prepare(frame, c.center, c.scale) for _, frame, c in looks]) if looks else []
        seen: list[list[Pose]] = [[pose] for _, pose, _ in people]
        for (i, _, _), pose in zip(looks, more, strict=True):
            seen[i].append(pose)
        return [most_confident(s) if len(s) > 1 else s[0] for s in seen]

    def estimate(self, frames: Sequence[Image], boxes: Sequence[Box] | None = None) -> list[Pose]:
        """One pose per frame: the person in `boxes`, or the centered person."""
        if boxes is not None and len(boxes) != len(frames):
            raise ValueError(f"{len(frames)} frames but {len(boxes)} boxes")
        if boxes is None:
            crops = [center_crop(f.shape[1], f.shape[0]) for f in frames]
        else:
            centers, scales = box_to_center_scale(boxes, margin=self.box_margin)
            crops = [(c, float(s)) for c, s in zip(centers, scales, strict=True)]
        return self.infer([self.prepare(f, c, s) for f, (c, s) in zip(frames, crops, strict=True)])

    def close(self) -> None:
        self.backend.close()
        if self._own_detector is not None:
            self._own_detector.close()

    def __enter__(self) -> PoseEstimator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
