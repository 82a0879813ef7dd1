"""``probe`` on real aligned faces with the bundled detector: 8 FFHQ reals and 8 StyleGAN2 fakes of the
shared test splits, a few interventions, run once through the CLI (``--format json``, ``--findings``);
then its numbers, the edited images, the report's section and claim (e) drawn from the rows it appended."""
from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import FACES, REPO
from patchforensics.cli import main

N = 8
REAL, FAKE = FACES / "ffhq" / "test", FACES / "tpdne-stylegan2" / "test"
INTERVENTIONS = ("identity,transplant:background,transplant-same:background,transplant:eye,transplant-same:eye,"
                 "occlude:hair,keep:eye,edit:jpeg:75,edit:grey")


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def probed(tmp_path_factory):
    """One CLI run; its stdout (JSON), results folder and the findings folder it appended to."""
    root = tmp_path_factory.mktemp("probe")
    findings = root / "findings"
    findings.mkdir()
    shutil.copy(REPO / "docs" / "findings" / "regions.csv", findings / "regions.csv")   # claim (c)'s counts
    out = root / "results" / "probe-bundled"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        status = main(["probe", "--real", str(REAL), "--fake", str(FAKE), "--n", str(N), "--seed", "3",
                       "--interventions", INTERVENTIONS, "--format", "json", "--out", str(out),
                       "--findings", str(findings)])
    assert status == 0
    return {"stdout": buf.getvalue(), "out": out, "findings": findings, "root": root}


def rows_by(summary: dict) -> dict[tuple[str, str], dict]:
    return {(r["intervention"], r["class"]): r for r in summary["rows"]}


def test_json_on_stdout_is_probe_json_and_counts_come_from_the_run(probed):
    summary = json.loads(probed["stdout"])
    assert summary == json.loads((probed["out"] / "probe.json").read_text())
    assert summary["n"] == {"real": N, "fake": N} and summary["seed"] == 3
    assert summary["model"]["source"] == "bundled" and summary["threshold"]["name"] in ("fpr3pct", "eer")
    assert "calibrated" in summary["threshold"]["source"]
    rows = rows_by(summary)
    names = [n for n in summary["interventions"]]
    assert len(names) == 9 and {(n, c) for n in names for c in ("real", "fake")} <= set(rows)
    for r in summary["rows"]:
        assert r["n"] + r["skipped"] == N, r                        # every face measured or counted as skipped
        if r["n"]:
            assert r["lo"] <= r["mean_change"] <= r["hi"], r
    assert all(rows[(n, c)]["lo"] < rows[(n, c)]["hi"] for n in ("edit:jpeg:75", "occlude:hair") for c in ("real", "fake"))
    # an eye is a few pixels high at 128 px: feathered less, not erased, so (nearly) every face is measured
    assert all(rows[(n, c)]["n"] >= N - 1 for n in ("transplant:eye", "keep:eye") for c in ("real", "fake"))
    # the contrast is the per-face difference: with every face in both, the difference of the two means
    for cls in ("real", "fake"):
        t, s, c = (rows[(f"{k}:background", cls)] for k in ("transplant", "transplant-same", "transplant-vs-same"))
        if t["n"] == s["n"] == c["n"] == N:
            assert c["mean_change"] == pytest.approx(t["mean_change"] - s["mean_change"], abs=1e-12)
    # the flagged share moves exactly by what flipped, and flips are counted at the run's threshold
    for r in summary["rows"]:
        if r["family"] != "transplant-vs-same" and r["n"]:
            assert abs(r["flagged_after"] - r["flagged_before"]) <= r["flipped"] + 1e-12
    table = read_csv(probed["out"] / "probe.csv")
    assert [(r["intervention"], r["class"]) for r in table] == [(r["intervention"], r["class"]) for r in summary["rows"]]
    pairs = read_csv(probed["out"] / "pairs.csv")
    assert len(pairs) == 4 * N                                          # 2 classes x (other, same)
    for p in pairs:
        if p["partner"]:
            other = p["kind"] == "other"
            partner_class = ("fake" if p["class"] == "real" else "real") if other else p["class"]
            assert Path(p["partner"]).parent == (REAL if partner_class == "real" else FAKE)
            assert p["partner"] != p["image"]


def test_identity_gives_exactly_zero_change_and_no_flips(probed):
    rows = rows_by(json.loads(probed["stdout"]))
    for cls in ("real", "fake"):
        r = rows[("identity", cls)]
        assert r["n"] == N and r["skipped"] == 0
        assert r["mean_change"] == 0.0 and r["lo"] == 0.0 and r["hi"] == 0.0 and r["flipped"] == 0.0
        assert r["mean_p_after"] == r["mean_p_before"]


def test_region_edits_change_only_what_their_mask_covers(probed):
    """The images the pipeline scores (prepare + edits, as score_all makes them): every pixel where the
    edit's mask is 0 is the original's, a transplant's or occlusion's mask lies inside the region (of both
    faces), keep-only's covers all outside it, and each edit does change something."""
    from patchforensics.probe.edits import edits
    from patchforensics.probe.inputs import PARTNER_KIND
    from patchforensics.probe.pipeline import SEGMENTER, ProbeConfig, prepare
    from patchforensics.probe.registry import parse_interventions

    cfg = ProbeConfig(real=str(REAL), fake=str(FAKE), out=str(probed["root"] / "unused"), n=N, seed=3)
    ivs = parse_interventions("transplant:background,transplant:brows,occlude:mouth,keep:eye", SEGMENTER.regions)
    prep = prepare(cfg, ivs)
    made_edits = changed = 0
    for iv in ivs:
        region = prep.region_ids[iv.region]
        for cls in ("real", "fake"):
            partners = prep.pairs[(cls, PARTNER_KIND[iv.family])] if iv.paired else None
            for i, made in edits(iv, prep.faces[cls], partners, prep.region_ids, cfg.seed, cfg.feather_px):
                if isinstance(made, str):
                    continue
                face = prep.faces[cls][i]
                outside = made.mask == 0
                assert np.array_equal(made.image[outside], face.image[outside]), (iv.name, face.path)
                if iv.family == "keep":            # everything outside the region painted, the region kept
                    assert (made.mask == 1)[face.regions != region].all()
                else:                               # only the region (of both faces) changed
                    assert not (made.mask > 0)[face.regions != region].any()
                if iv.paired:
                    assert not (made.mask > 0)[partners[i].regions != region].any()
                made_edits += 1
                changed += int((made.image != face.image).any())
    assert made_edits >= 4 * 2 * N - 4 and changed == made_edits        # each edit made changed its region


def test_unknown_names_and_a_non_ffhq_real_folder_are_refused_in_one_line_before_work(tmp_path, capsys):
    out = tmp_path / "never"
    base = ["probe", "--real", str(REAL), "--fake", str(FAKE), "--out", str(out)]
    assert main(base + ["--interventions", "identity,squint:eye"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown intervention 'squint:eye'" in err
    assert "transplant:REGION" in err and "edit:SPEC" in err and "neck_clothes" in err
    assert main(base + ["--interventions", "occlude:ears"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown region 'ears'" in err and "eye" in err
    celeba = FACES / "celebahq" / "test"
    assert main(["probe", "--real", str(celeba), "--fake", str(FAKE), "--out", str(out),
                 "--interventions", "transplant:eye"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "FFHQ" in err and "--pair-real" in err
    assert main(["probe", "--real", str(FACES / "ffhq"), "--fake", str(FAKE), "--out", str(out)]) == 2
    assert "pass one of them" in capsys.readouterr().err
    assert main(base + ["--device", "gpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--device gpu" in err
    assert not out.exists()
    assert main(["probe", "--list"]) == 0
    listed = capsys.readouterr().out
    assert "identity " in listed and "transplant-same:eye " in listed and "keep:hair " in listed
    assert "edit:jpeg:75 " in listed


def test_celebahq_reals_pair_the_fakes_with_pair_real_and_get_no_transplant_of_their_own(tmp_path):
    from patchforensics.probe.pipeline import ProbeConfig, run_probe

    celeba = FACES / "celebahq" / "test"
    result = run_probe(ProbeConfig(real=str(celeba), fake=str(FAKE), pair_real=str(REAL), out=str(tmp_path / "p"),
                                   n=4, interventions="transplant:mouth,transplant-same:mouth,occlude:mouth"))
    rows = rows_by(result.summary)
    assert {c for n, c in rows if n.startswith("transplant")} == {"fake"}         # reals: CelebA-HQ framing
    assert ("occlude:mouth", "real") in rows and "not FFHQ-framed" in result.summary["notes"][0]
    pairs = read_csv(tmp_path / "p" / "pairs.csv")
    assert {p["class"] for p in pairs} == {"fake"}
    assert {Path(p["partner"]).parent for p in pairs if p["kind"] == "other" and p["partner"]} == {REAL}


def test_an_existing_out_is_refused_without_force(probed, capsys):
    assert main(["probe", "--real", str(REAL), "--fake", str(FAKE), "--out", str(probed["out"]),
                 "--interventions", "identity"]) == 2
    assert "--force" in capsys.readouterr().err


def test_report_page_shows_the_probe_section(probed):
    from patchforensics.explain.report import ReportConfig, run_report

    page = run_report(ReportConfig(results_dir=str(probed["root"] / "results")))
    html = page.read_text()
    assert "What moves p(fake): probe of" in html and 'id="probe-contrast"' in html
    assert 'id="probe-fake"' in html and 'id="probe-real"' in html and "edit:jpeg:75" in html
    assert html.count("data:image/png;base64,") == 1                    # probe.png, inlined
    assert "probe-bundled/probe.csv" in html


def test_findings_claim_e_is_drawn_from_the_appended_rows_and_stays_byte_stable(probed, tmp_path):
    from patchforensics.experiments.findings import fill_document, render_views
    from patchforensics.experiments.results_tables import FindingsTables, probe_rows

    findings = probed["findings"]
    table = read_csv(findings / "probe.csv")
    summary = json.loads(probed["stdout"])
    assert len(table) == len(summary["rows"]) and {r["key"] for r in table} == {summary["model"]["key"]}
    # the same run again adds nothing; other numbers under the same identity are refused
    tables = FindingsTables(findings)
    assert tables.append("probe", probe_rows(summary), refuse_conflicts=True) == 0
    changed = json.loads(probed["stdout"])
    changed["rows"][1]["mean_change"] += 0.01
    with pytest.raises(ValueError, match="other numbers"):
        tables.append("probe", probe_rows(changed), refuse_conflicts=True)
    doc = tmp_path / "findings.md"
    blocks = ("probe/evidence", "probe/causal-fakes", "probe/causal-reals", "probe/causal-vs-c", "probe/agreement",
              "probe/probe_causal.png")
    doc.write_text("# e\n\n" + "".join(f"<!-- generated: {b} -->\n<!-- /generated -->\n" for b in blocks))
    assert render_views(findings, [])["probe"] == findings / "generated" / "probe"
    filled, lacking = fill_document(doc, findings / "generated")
    assert filled == list(blocks) and not lacking
    text = doc.read_text()
    fake_bg = next(r for r in summary["rows"] if r["intervention"] == "transplant-vs-same:background"
                   and r["class"] == "fake")
    assert f"{fake_bg['mean_change']:+.3f} [{fake_bg['lo']:+.3f}, {fake_bg['hi']:+.3f}]" in text
    assert "Spearman" in text and "top-patch" in text and "![" in text
    first = {p.name: p.read_bytes() for p in (findings / "generated" / "probe").iterdir()}
    render_views(findings, [])
    fill_document(doc, findings / "generated")
    assert {p.name: p.read_bytes() for p in (findings / "generated" / "probe").iterdir()} == first
    assert doc.read_text() == text
