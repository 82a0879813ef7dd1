"""The interventions of ``probe``, named once: ``identity``, ``FAMILY:REGION`` and ``edit:SPEC``.

A region intervention works on one region of the face segmenter (``regions``' mediapipe
segmenter by default: background, skin, brows, eye, nose, mouth, hair, neck_clothes); an
everyday edit is a corruption of the ``--corrupt`` grammar applied to the whole image. The
default set is every region intervention of every region, then every edit of
:data:`~patchforensics.data.corruptions.EVERYDAY_EDITS`, after ``identity``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..data.interventions import OCCLUDE_FILLS
from ..data.corruptions import EVERYDAY_EDITS, Corruption, parse_corruption

#: what each fill paints over a region (the fills of :func:`~patchforensics.data.interventions.occlude`)
FILL_TEXT = {"mean": "its own mean colour", "blur": "the image strongly blurred",
             "noise": "noise of its own mean and spread"}
#: occluding family -> its fill: ``occlude`` is the first fill (mean colour), the others are named after theirs
OCCLUDE_FAMILIES = {("occlude" if i == 0 else f"occlude-{fill}"): fill for i, fill in enumerate(OCCLUDE_FILLS)}
#: the fill of ``keep`` (everything but the region occluded)
KEEP_FILL = OCCLUDE_FILLS[0]
#: the families that paste a region from a paired image: of the other class, of the same class (the control)
PAIRED = ("transplant", "transplant-same")
#: family -> what it does (REGION, SPEC: the intervention's argument); this order is --list's and the default's
FAMILIES = {
    "identity": "the face unchanged, through the same pipeline: the change must be exactly 0",
    "transplant": "REGION pasted from a paired face of the other class at the same aligned place, through a "
                  "feathered mask inside both faces' REGION",
    "transplant-same": "control: REGION pasted so from another face of the same class (what seams alone do)",
    **{family: f"REGION painted with {FILL_TEXT.get(fill, fill)}" for family, fill in OCCLUDE_FAMILIES.items()},
    "keep": f"all but REGION painted over ({FILL_TEXT.get(KEEP_FILL, KEEP_FILL).replace('its own', 'the')} "
            "of what is painted)",
    "edit": "the everyday edit SPEC of the whole face (the --corrupt grammar)",
}
#: the families that work on one region
REGIONAL = tuple(f for f in FAMILIES if f not in ("identity", "edit"))
#: ``<PAIRED[0]>-vs-same:REGION``: the derived contrast of a region, transplant minus its control
CONTRAST = "transplant-vs-same"


@dataclass(frozen=True)
class Intervention:
    """One intervention: a family of :data:`FAMILIES`, with its region or its corruption."""

    family: str
    region: str | None = None
    corruption: Corruption | None = None

    @property
    def name(self) -> str:
        """``identity``, ``occlude:eye``, ``edit:jpeg:75``: the name of ``--interventions`` and the outputs."""
        if self.corruption is not None:
            return f"edit:{self.corruption}"
        return self.family if self.region is None else f"{self.family}:{self.region}"

    @property
    def paired(self) -> bool:
        return self.family in PAIRED

    @property
    def fill(self) -> str | None:
        """The fill of an occluding family (``keep``: of what lies outside the region), else ``None``."""
        return KEEP_FILL if self.family == "keep" else OCCLUDE_FAMILIES.get(self.family)

    def describe(self) -> str:
        text = FAMILIES[self.family].replace("REGION", self.region or "REGION")
        return text.replace("SPEC", str(self.corruption) if self.corruption else "SPEC")


def default_interventions(regions: Sequence[str]) -> tuple[Intervention, ...]:
    """``identity``, every regional family for each region (region by region), every everyday edit."""
    return (Intervention("identity"),
            *(Intervention(family, region) for region in regions for family in REGIONAL),
            *(Intervention("edit", corruption=parse_corruption(s)) for s in EVERYDAY_EDITS))


def usage(regions: Sequence[str]) -> str:
    """The valid names in one line (the refusal of an unknown one)."""
    return (f"valid: identity, {', '.join(f + ':REGION' for f in REGIONAL)} or edit:SPEC (REGION one of "
            f"{', '.join(regions)}; SPEC a --corrupt spec such as jpeg:75), a family alone for all of it "
            "(e.g. transplant, edit), or all; 'patchforensics probe --list' names each")


def parse_interventions(names: str | Sequence[str] | None, regions: Sequence[str]) -> tuple[Intervention, ...]:
    """``identity,transplant:eye,edit:grey`` (or a list of such strings) -> interventions, in the
    order given, each once; ``None`` or ``all`` = :func:`default_interventions`. A family alone
    (``transplant``, ``edit``) stands for each of its region or its everyday edits. Raises
    ``ValueError`` in one line, listing the valid names, for an unknown one."""
    if names is None:
        return default_interventions(regions)
    tokens = [t.strip() for part in ([names] if isinstance(names, str) else names) for t in str(part).split(",")]
    out: list[Intervention] = []
    for token in filter(None, tokens):
        out.extend(_parse_one(token, regions))
    if not out:
        raise ValueError(f"no intervention named; {usage(regions)}")
    return tuple(dict.fromkeys(out))


def _parse_one(token: str, regions: Sequence[str]) -> tuple[Intervention, ...]:
    family, _, arg = token.partition(":")
    family = family.lower()
    if family == "all" and not arg:
        return default_interventions(regions)
    if family == "identity" and not arg:
        return (Intervention("identity"),)
    if family == "edit":
        if not arg:
            return tuple(i for i in default_interventions(regions) if i.family == "edit")
        try:
            return (Intervention("edit", corruption=parse_corruption(arg)),)
        except ValueError as e:
            raise ValueError(f"intervention {token!r}: {e}") from None
    if family in REGIONAL:
        if not arg:
            return tuple(Intervention(family, region) for region in regions)
        if arg in regions:
            return (Intervention(family, arg),)
        raise ValueError(f"intervention {token!r}: unknown region {arg!r}; the segmenter's regions are "
                         f"{', '.join(regions)}")
    raise ValueError(f"unknown intervention {token!r}; {usage(regions)}")


def list_text(regions: Sequence[str]) -> str:
    """``probe --list``: every name of the default set with what it does, then the other forms."""
    lines = [f"{i.name:<28} {i.describe()}" for i in default_interventions(regions)]
    lines += ["",
              f"{'edit:SPEC':<28} any other --corrupt spec (e.g. edit:jpeg:30, edit:blur:2)",
              f"{'FAMILY':<28} a family alone runs it for each region or edit (e.g. transplant, keep, edit)",
              f"{CONTRAST + ':REGION':<28} (derived, not named) transplant:REGION minus transplant-same:REGION per "
              "image: the region's evidence beyond the seams; reported when both ran"]
    return "\n".join(lines)
