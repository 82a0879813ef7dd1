"""The adapted model's card (``MODEL_CARD.md``): what it was taught, from what, what it
catches of the new generator on samples it never trained on, and what it forgot."""
from __future__ import annotations

from typing import Any

from ..models.card import SCREENING_FPR, STRICT_FPR, ModelCard, fpr_name


def _pct(r: dict[str, Any]) -> str:
    lo, hi = r["ci"]
    return f"{r['rate']:.1%} ({r['k']}/{r['n']}; 95% {lo:.1%}-{hi:.1%})"


def _estimate_lines(est: dict[str, Any] | None, generator: str) -> list[str]:
    if est is None:
        return ["No held-back estimate was made (`--no-estimate`)."]
    return [f"Recall on {generator} samples the model never trained on ({est['folds']}-fold over the "
            f"{est['n']} samples: each fold's model scored on its held-out fold only, at that model's own "
            "thresholds):", "",
            "| threshold | recall (95% Wilson interval) |", "|---|---|",
            f"| `{fpr_name(SCREENING_FPR)}` (default) | {_pct(est[fpr_name(SCREENING_FPR)])} |",
            f"| `{fpr_name(STRICT_FPR)}` (strict) | {_pct(est[fpr_name(STRICT_FPR)])} |"]


def _forgetting_lines(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return ["The base's test sets were not found here: forgetting was not measured."]
    lines = ["Flagged share on the base's own test sets at each model's default threshold (recall for "
             "fakes, false alarms for reals), before and after; the difference is paired (the same "
             "images) with a 95% bootstrap interval; AP of each fake set against all the test reals.", "",
             "| test set | class | n | before | after | difference (95%) | AP before | AP after |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lo, hi = r["diff_ci"]
        ap = (f"{r['ap_before']:.3f} | {r['ap_after']:.3f}" if "ap_before" in r else "- | -")
        lines.append(f"| {r['set']} | {r['class']} | {r['n']} | {_pct(r['before'])} | {_pct(r['after'])} | "
                     f"{r['diff']:+.1%} ({lo:+.1%} to {hi:+.1%}) | {ap} |")
    return lines


def card_markdown(card: ModelCard, numbers: dict[str, Any]) -> str:
    """The Markdown card of an adapted checkpoint from the numbers its run wrote."""
    gen, base, samples = numbers["generator"], numbers["base"], numbers["samples"]
    kind = ("a diffusion model" if numbers["diffusion"] else "a generator")
    thr = numbers["threshold_reals"]
    lines = [f"# {card.name}: {base['name']} adapted to {gen}", "",
             f"Adapted by `patchforensics adapt` from `{base['name']}` (weights `{base['weights']}`) to "
             f"{gen}, {kind} it had not seen, with the `{numbers['method']}` method on {samples['used']} of "
             f"its samples ({len(samples['no_face'])} files without a face, {len(samples['unreadable'])} "
             f"unreadable), in {numbers['seconds']:.0f} s.", "",
             "## Thresholds", "",
             f"Chosen on {thr['n']} validation reals: `{fpr_name(SCREENING_FPR)}` (default) flags "
             f"{_pct(thr[fpr_name(SCREENING_FPR)])} of them; p(fake) cuts: "
             + ", ".join(f"`{n}` {v:.4f}" for n, v in numbers["thresholds"].items()) + ".", "",
             f"## {gen}", "", *_estimate_lines(numbers["estimate"], gen), "",
             "## Forgetting", "", *_forgetting_lines(numbers["forgetting"]), "",
             "## Limits", "",
             f"- The estimate rests on {samples['used']} samples: a generator's other faces may differ "
             "from those collected (another truncation, another source, other post-processing).",
             "- Every source this was measured on is a StyleGAN-family face generator trained on FFHQ; "
             "transfer to very different generators (diffusion models) is likely weaker (docs/adapt.md).",
             "- The leak guard finds byte-identical files only: a re-encoded copy of a real or training "
             "image among the fakes is not caught."]
    if numbers["notes"]:
        lines += ["", "## Notes", "", *[f"- {n}" for n in numbers["notes"]]]
    return "\n".join(lines) + "\n"
