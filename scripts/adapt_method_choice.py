"""How adapt's default method was chosen (docs/adapt.md, "Choosing the method"): fold
StyleGAN2 (tpdne + NVIDIA held out of the base), N = 50 samples from its train split,
2 draws, every recipe scored on the validation splits only. One JSON line per draw.

    python scripts/adapt_method_choice.py experiments/adapt/checkpoints/base_no-stylegan2 \
        '{"method": "head"}' '{"method": "head", "replay": false}' '{"method": "block"}' ...

Each frozen part's outputs are cached once per method and shared by its recipes and draws.
"""
import sys, time, json
import numpy as np, torch
from pathlib import Path
from patchforensics.models.checkpoint import load_model
from patchforensics.core.imageio import list_images, load_rgb
from patchforensics.data.transforms import eval_image
from patchforensics.data.dataset import sample_seed
from patchforensics.adapt.methods import Recipe, Pools, adapted_copy, cache_inputs, split_model, train_trainable
from patchforensics.adapt.pipeline import p_fake
from patchforensics.adapt.measure import fpr_cut, ap
D = Path("../shared/data/faces128")
base = load_model(sys.argv[1], "bestval"); tcfg = base.card.transform()
def imgs(folder, split, n=None, seed=0):
    ps = list_images(D / folder / split)
    if n is not None and n < len(ps):
        ps = [ps[i] for i in sorted(sample_seed(seed, len(ps)).choice(len(ps), n, replace=False))]
    return [eval_image(load_rgb(p), tcfg) for p in ps]
pool = imgs("tpdne-stylegan2", "train") + imgs("stylegan2-nvidia", "train")
val = {"real": imgs("ffhq", "val") + imgs("celebahq", "val"),
       "new": imgs("tpdne-stylegan2", "val") + imgs("stylegan2-nvidia", "val"),
       "stylegan1": imgs("stylegan1", "val"), "generated-photos": imgs("generated-photos", "val")}
rep_real = imgs("ffhq", "train", 200, 1) + imgs("celebahq", "train", 100, 2)
rep_fake = imgs("stylegan1", "train", 150, 3) + imgs("generated-photos", "train", 150, 4)
draws = [sorted(sample_seed(100 + d, len(pool)).choice(len(pool), 50, replace=False).tolist()) for d in (0, 1)]
configs = [json.loads(a) for a in sys.argv[2:]]
caches = {}
def evaluate(trainable, vc):
    s = {k: p_fake(trainable, v) for k, v in vc.items()}
    t = fpr_cut(s["real"], 0.03)
    r = {"new_recall": float((s["new"] >= t).mean()), "new_ap": ap(s["real"], s["new"])}
    for k in ("stylegan1", "generated-photos"):
        r[k + "_recall"] = float((s[k] >= t).mean()); r[k + "_ap"] = ap(s["real"], s[k])
    return r
for cfg in configs:
    replay = cfg.pop("replay", True)
    rec = Recipe(**{k: (tuple(v) if k == "views" else v) for k, v in cfg.items()})
    ck = (rec.method, rec.views)
    t0 = time.time()
    if ck not in caches:
        frozen, _ = split_model(adapted_copy(base.model), rec.method)
        caches[ck] = {"real": cache_inputs(frozen, rep_real, rec.views, 0), "old": cache_inputs(frozen, rep_fake, rec.views, 2),
                      "pool": cache_inputs(frozen, pool, rec.views, 1),
                      "val": {k: cache_inputs(frozen, v, ("plain",), 3) for k, v in val.items()}}
        m0 = adapted_copy(base.model); _, tr0 = split_model(m0, rec.method)
        print(json.dumps({"base": True, "method": rec.method, **{k: round(v, 4) for k, v in evaluate(tr0, caches[ck]["val"]).items()}, "cache_s": round(time.time() - t0, 1)}), flush=True)
    c = caches[ck]; n = len(pool)
    for d, idx in enumerate(draws):
        t1 = time.time()
        m = adapted_copy(base.model); _, tr = split_model(m, rec.method)
        rows = [v * n + i for v in range(len(rec.views)) for i in idx]
        train_trainable(tr, Pools(c["real"], c["pool"][rows], c["old"] if replay else None), rec, seed=d)
        r = evaluate(tr, c["val"])
        print(json.dumps({"cfg": {**cfg, "replay": replay}, "draw": d, **{k: round(v, 4) for k, v in r.items()}, "train_s": round(time.time() - t1, 1)}), flush=True)
