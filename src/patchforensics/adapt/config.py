"""``AdaptConfig``: the options of ``patchforensics adapt``, checked before any work."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..core.config import require
from ..core.fileio import ensure_new_output
from ..data.align import STYLES
from ..scoring.runtime import BF16_CHOICES
from .inputs import FACE_MODES
from .methods import METHODS, VIEWS, Recipe

#: the default method and its recipe, chosen on validation (docs/adapt.md, "Choosing the method")
DEFAULT_METHOD = "head"
#: fewer usable fake faces than this and no estimate or adaptation is worth running
MIN_FAKES = 10
#: validation reals below which the 3% threshold is refused, and below which it is called uncertain
MIN_THRESHOLD_REALS = 30
FEW_THRESHOLD_REALS = 100


@dataclass
class AdaptConfig:
    """Options of one adaptation.

    ``fake``: files or folders of the new generator's samples (all of them are used:
    splits inside ``adapt`` only estimate what it reports); ``real``: the user's own
    real photos, which choose the thresholds (default: the base's validation reals);
    ``model``: a checkpoint folder (default: the bundled detector); ``replay``: replay
    the base's training data (the folders its card records, found under ``replay_root``
    by name when given); ``name``: the new generator's name for the card and scope line
    (default: the first ``--fake`` folder's name); ``diffusion``: the user says it is a
    diffusion model.
    """

    fake: list[str]
    out: str
    real: list[str] = field(default_factory=list)
    model: str | None = None
    which_epoch: str | None = None
    name: str = ""
    diffusion: bool = False
    method: str = DEFAULT_METHOD
    replay: bool = True
    replay_root: str | None = None
    replay_per_class: int = 300
    steps: int = Recipe.steps
    lr: float = Recipe.lr
    l2sp: float = Recipe.l2sp
    views: tuple[str, ...] = Recipe.views
    folds: int = 5
    faces: str = "auto"
    align_style: str = "ffhq"
    seed: int = 0
    bf16: str = "auto"
    batch_size: int = 64
    estimate: bool = True
    forgetting: bool = True             # measure it on the base's test sets (the benchmark does its own)
    force: bool = False

    def recipe(self, method: str | None = None) -> Recipe:
        return Recipe(method=method or self.method, steps=self.steps, lr=self.lr, l2sp=self.l2sp,
                      views=tuple(self.views))

    @property
    def generator(self) -> str:
        return self.name or (Path(self.fake[0]).name if self.fake else "new generator")

    def validate(self) -> None:
        """One clear line for a wrong option, before any image is read."""
        require(bool(self.fake), "fake", "give the new generator's samples: --fake DIR (repeatable)")
        for entry in [*self.fake, *self.real]:
            require(Path(entry).exists(), "fake" if entry in self.fake else "real",
                    f"{entry} not found; pass image files or folders of them")
        if self.model is not None:
            require(Path(self.model).is_dir() and (Path(self.model) / "config.yaml").is_file(), "model",
                    f"{self.model} is not a checkpoint folder (config.yaml + *.safetensors): pass one "
                    "written by 'patchforensics train' or 'adapt', or leave --model out for the bundled detector")
        require(self.method in METHODS, "method", f"must be one of {', '.join(METHODS)}")
        require(self.faces in FACE_MODES, "faces", f"must be one of {', '.join(FACE_MODES)}")
        require(self.align_style in STYLES, "align_style", f"must be one of {', '.join(STYLES)}")
        require(self.bf16 in BF16_CHOICES, "bf16", f"must be one of {', '.join(BF16_CHOICES)}")
        require(set(self.views) <= set(VIEWS) and "plain" in self.views, "views",
                f"is 'plain' plus any of {', '.join(VIEWS[1:])}")
        require(self.folds >= 2, "folds", "must be >= 2 (the held-back estimate needs two folds)")
        require(self.replay_root is None or Path(self.replay_root).is_dir(), "replay",
                f"{self.replay_root} is not a folder; give the folder that holds the base's training folders")
        require(self.replay_per_class > 0, "replay_per_class", "must be > 0")
        self.recipe().validate()
        ensure_new_output(self.out, self.force)
