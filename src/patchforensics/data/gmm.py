"""``gmm-fit`` / ``gmm-sample``: a generator you can train here.

The paper's GMM fakes come from a Gaussian mixture over whole low-resolution
face images (Richardson & Weiss, "On GANs and GMMs", NeurIPS 2018). A full
covariance per component is out of reach (D = H·W·C pixels), so each component
is a factor analyser, as in that paper:

    x = μ_k + A_k z + ε,  z ~ N(0, I_l),  ε ~ N(0, diag(ψ_k)),  k ~ Categorical(π)

i.e. covariance ``A_k A_kᵀ + diag(ψ_k)`` with an ``l``-dimensional low-rank part.
It is fitted with EM (Ghahramani & Hinton 1996, "The EM algorithm for mixtures
of factor analyzers"), initialised by k-means and a probabilistic-PCA solution
per cluster; every step works through the Woodbury identity, so the cost is
O(N·D·l·K) per iteration and the fit runs on a CPU in seconds to minutes.

Samples are drawn at the model's resolution (without the pixel noise ε by
default, as Richardson & Weiss show them) and brought to the reals' size with
:func:`patchforensics.data.prepare.standardize`. Models are saved as
``gmm.safetensors`` (π, μ, A, ψ) + ``gmm.yaml`` (shapes and provenance); never
pickled.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ..core import fileio
from ..core.config import require
from ..core.imageio import ImageLoadError, NoUsableImagesError, SkipLog, load_rgb, require_images
from .prepare import standardize
from .sample import SampleResult, write_generated_dataset

FORMAT = "patchforensics-mfa/1"
MODEL_WEIGHTS, MODEL_CONFIG = "gmm.safetensors", "gmm.yaml"


@dataclass
class MixtureOfFactorAnalyzers:
    """Parameters over flattened (resolution, resolution, channels) images with values 0..1.

    ``weights`` (K,), ``means`` (K, D), ``loadings`` (K, D, l), ``noise_variances`` (K, D).
    """

    weights: np.ndarray
    means: np.ndarray
    loadings: np.ndarray
    noise_variances: np.ndarray
    resolution: int
    channels: int

    @property
    def n_components(self) -> int:
        return len(self.weights)

    @property
    def latent_dim(self) -> int:
        return self.loadings.shape[2]

    def log_likelihood(self, x: np.ndarray) -> np.ndarray:
        """(N, K) log p(x_n, component k) for x (N, D)."""
        return np.stack([_component_stats(x, self.means[k], self.loadings[k], self.noise_variances[k])[0]
                         for k in range(self.n_components)], axis=1) + np.log(self.weights)

    def sample(self, n: int, rng: np.random.Generator, noise: bool = False
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``n`` images (n, H, W, C) clipped to 0..1, with their components (n,) and latents (n, l)."""
        components = rng.choice(self.n_components, size=n, p=self.weights)
        latents = rng.standard_normal((n, self.latent_dim)).astype(np.float32)
        x = self.means[components]
        for k in np.unique(components):
            rows = components == k
            x[rows] += latents[rows] @ self.loadings[k].T
        if noise:
            x = x + np.sqrt(self.noise_variances[components]) * rng.standard_normal(x.shape).astype(np.float32)
        images = np.clip(x, 0.0, 1.0).reshape(n, self.resolution, self.resolution, self.channels)
        return images, components, latents


def _component_stats(x: np.ndarray, mean: np.ndarray, loading: np.ndarray, noise_var: np.ndarray):
    """log N(x; μ, AAᵀ + diag ψ) per row, E[z|x] (N, l) and Cov[z|x] (l, l), via Woodbury."""
    d, l = loading.shape
    centred = x - mean
    scaled = centred / noise_var                                # Ψ⁻¹(x-μ)
    proj = scaled @ loading                                     # (N, l) = (x-μ)ᵀΨ⁻¹A
    inner = np.eye(l) + (loading.T.astype(np.float64) / noise_var) @ loading  # I + AᵀΨ⁻¹A
    inner_inv = np.linalg.inv(inner)
    maha = np.einsum("nd,nd->n", centred, scaled) - np.einsum("nl,lm,nm->n", proj, inner_inv, proj)
    logdet = np.log(noise_var.astype(np.float64)).sum() + np.linalg.slogdet(inner)[1]
    log_density = -0.5 * (d * np.log(2 * np.pi) + logdet + maha)
    return log_density, (proj @ inner_inv).astype(np.float32), inner_inv


def _init_from_kmeans(x: np.ndarray, k: int, l: int, min_var: float, seed: int) -> MixtureOfFactorAnalyzers:
    """k-means clusters, then the probabilistic-PCA fit of each cluster."""
    from sklearn.cluster import KMeans

    labels = KMeans(n_clusters=k, n_init=3, random_state=seed).fit_predict(x)
    d = x.shape[1]
    weights, means = np.zeros(k), np.zeros((k, d), np.float32)
    loadings, noise = np.zeros((k, d, l), np.float32), np.zeros((k, d), np.float32)
    for c in range(k):
        members = x[labels == c]
        means[c] = members.mean(0)
        centred = members - means[c]
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        eig = s ** 2 / max(len(members), 1)                      # variances along the principal axes
        used = min(l, len(eig))
        rest = (eig[used:].sum() / max(d - used, 1)) if len(eig) > used else min_var
        loadings[c, :, :used] = (vt[:used].T * np.sqrt(np.maximum(eig[:used] - rest, 0.0))).astype(np.float32)
        residual = centred.var(0) - (loadings[c] ** 2).sum(1)
        noise[c] = np.maximum(residual, max(rest, min_var))
        weights[c] = len(members)
    return MixtureOfFactorAnalyzers(weights / weights.sum(), means, loadings, noise, 0, 0)


def fit_mfa(x: np.ndarray, n_components: int, latent_dim: int, iterations: int, seed: int = 0,
            min_variance: float = 1e-4, progress: bool = True) -> tuple[MixtureOfFactorAnalyzers, list[float]]:
    """EM fit on x (N, D) float32 in 0..1; returns the model (resolution/channels unset)
    and the mean log-likelihood per dimension after each iteration (non-decreasing up
    to the variance floor)."""
    n, d = x.shape
    model = _init_from_kmeans(x, n_components, latent_dim, min_variance, seed)
    history = []
    for _ in tqdm(range(iterations), desc="gmm-fit EM", disable=not progress, unit="it"):
        stats = [_component_stats(x, model.means[k], model.loadings[k], model.noise_variances[k])
                 for k in range(n_components)]
        joint = np.stack([s[0] for s in stats], axis=1) + np.log(np.maximum(model.weights, 1e-300))
        top = joint.max(1, keepdims=True)
        log_px = top[:, 0] + np.log(np.exp(joint - top).sum(1))
        history.append(float(log_px.mean() / d))
        resp = np.exp(joint - log_px[:, None])                   # (N, K) responsibilities
        for k, (_, ez, cov_z) in enumerate(stats):
            h = resp[:, k]
            total = h.sum()
            if total < latent_dim + 1:                           # starved component: keep it as it is
                continue
            ez1 = np.hstack([ez, np.ones((n, 1), np.float32)])  # augmented [E z; 1]
            weighted = (h[:, None] * ez1).astype(np.float32)
            s_xz = x.T @ weighted                                 # (D, l+1)
            s_zz = ez1.T.astype(np.float64) @ weighted
            s_zz[:latent_dim, :latent_dim] += total * cov_z
            joint_loading = np.linalg.solve(s_zz.T, s_xz.T.astype(np.float64)).T.astype(np.float32)
            second = h @ (x * x)
            model.noise_variances[k] = np.maximum((second - (joint_loading * s_xz).sum(1)) / total, min_variance)
            model.loadings[k] = joint_loading[:, :latent_dim]
            model.means[k] = joint_loading[:, latent_dim]
        model.weights = np.maximum(resp.sum(0) / n, 1e-12)
        model.weights /= model.weights.sum()
    return model, history


# ---------------------------------------------------------------- fit from images
@dataclass
class GMMFitConfig:
    """Options of ``patchforensics gmm-fit``.

    Images under ``real`` (its ``train`` subfolder if there is one) are brought
    to ``resolution``² with ``standardize`` (grey with ``grayscale``), mirrored
    copies added with ``flip``; ``n_components`` factor analysers of
    ``latent_dim`` factors are fitted with ``iterations`` EM steps.
    """

    real: str
    out: str
    resolution: int = 64
    grayscale: bool = False
    n_components: int = 8
    latent_dim: int = 16
    iterations: int = 10
    flip: bool = True
    max_images: int | None = None
    min_variance: float = 1e-4
    seed: int = 0
    force: bool = False

    def validate(self) -> None:
        require(4 <= self.resolution <= 128, "resolution", "must be between 4 and 128 pixels "
                "(the model covers whole images; 32 or 64 are typical)")
        require(self.n_components >= 1, "n_components", "must be >= 1")
        require(self.latent_dim >= 1, "latent_dim", "must be >= 1")
        require(self.iterations >= 0, "iterations", "must be >= 0")
        require(self.max_images is None or self.max_images >= 1, "max_images", "must be >= 1")
        require(self.min_variance > 0, "min_variance", "must be > 0")


def load_training_images(folder: str | Path, resolution: int, grayscale: bool, flip: bool,
                         max_images: int | None = None, progress: bool = True) -> tuple[np.ndarray, SkipLog]:
    """(N, resolution²·C) float32 in 0..1 from the images under ``folder`` (its
    ``train`` subfolder if present), plus the unreadable ones."""
    from .dataset import data_dir

    paths = require_images(data_dir(folder, "train"), "; pass a folder of real faces")
    paths = paths[:max_images] if max_images else paths
    rows, skipped = [], SkipLog()
    for path in tqdm(paths, desc="gmm-fit load", disable=not progress, unit="img"):
        try:
            im = standardize(load_rgb(path), resolution)
        except ImageLoadError as e:
            skipped.add(e)
            continue
        arr = np.asarray(im.convert("L") if grayscale else im, dtype=np.float32) / 255.0
        arr = arr.reshape(resolution, resolution, -1)
        rows.append(arr.ravel())
        if flip:
            rows.append(arr[:, ::-1].ravel())
    if not rows:
        raise NoUsableImagesError(f"none of the {len(paths)} images under {folder} could be read "
                                  f"(first: {skipped.skipped[0][0]}: {skipped.skipped[0][1]})")
    return np.stack(rows), skipped


def fit_gmm(cfg: GMMFitConfig, progress: bool = True) -> tuple[MixtureOfFactorAnalyzers, dict]:
    """Load the reals and fit; returns the model and a provenance dict (for the YAML)."""
    cfg.validate()
    x, skipped = load_training_images(cfg.real, cfg.resolution, cfg.grayscale, cfg.flip, cfg.max_images, progress)
    require(len(x) >= cfg.n_components * 2, "n_components",
            f"{cfg.n_components} components need at least {cfg.n_components * 2} training vectors, "
            f"there are {len(x)}; lower --components")
    model, history = fit_mfa(x, cfg.n_components, cfg.latent_dim, cfg.iterations, cfg.seed, cfg.min_variance,
                             progress)
    model.resolution, model.channels = cfg.resolution, 1 if cfg.grayscale else 3
    info = {"source": str(cfg.real), "training_vectors": int(len(x)), "flip": cfg.flip,
            "iterations": cfg.iterations, "seed": cfg.seed, "min_variance": cfg.min_variance,
            "log_likelihood_per_dim": [round(v, 5) for v in history], "skipped": skipped.as_list()}
    return model, info


def gmm_fit(cfg: GMMFitConfig, progress: bool = True) -> Path:
    """``gmm-fit``: fit on ``cfg.real`` and save the model into ``cfg.out``."""
    cfg.validate()
    fileio.ensure_new_output(cfg.out, cfg.force)
    model, info = fit_gmm(cfg, progress)
    return save_gmm(model, cfg.out, info)


def save_gmm(model: MixtureOfFactorAnalyzers, folder: str | Path, info: dict | None = None) -> Path:
    """Write ``gmm.safetensors`` + ``gmm.yaml`` into ``folder``."""
    from safetensors.numpy import save as save_tensors

    folder = Path(folder)
    tensors = {"weights": model.weights.astype(np.float32), "means": model.means.astype(np.float32),
               "loadings": model.loadings.astype(np.float32),
               "noise_variances": model.noise_variances.astype(np.float32)}
    fileio.write_bytes(folder / MODEL_WEIGHTS, save_tensors(tensors))
    fileio.write_yaml(folder / MODEL_CONFIG, {
        "format": FORMAT, "resolution": model.resolution, "channels": model.channels,
        "n_components": model.n_components, "latent_dim": model.latent_dim,
        "pixel_range": [0.0, 1.0], "layout": "flattened (height, width, channels), row-major",
        "fit": info or {}})
    return folder


def load_gmm(folder: str | Path) -> MixtureOfFactorAnalyzers:
    """Read a model written by :func:`save_gmm`; shapes are checked against the YAML."""
    from safetensors.numpy import load_file

    folder = Path(folder)
    for name in (MODEL_WEIGHTS, MODEL_CONFIG):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name} not found; pass a folder written by 'patchforensics gmm-fit'")
    meta = fileio.read_yaml(folder / MODEL_CONFIG)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{folder / MODEL_CONFIG} is not a {FORMAT} model description")
    t = load_file(str(folder / MODEL_WEIGHTS))
    k, l, r, c = meta["n_components"], meta["latent_dim"], meta["resolution"], meta["channels"]
    d = r * r * c
    expected = {"weights": (k,), "means": (k, d), "loadings": (k, d, l), "noise_variances": (k, d)}
    for name, shape in expected.items():
        if name not in t or t[name].shape != shape:
            raise ValueError(f"{folder / MODEL_WEIGHTS}: tensor {name!r} should have shape {shape}, "
                             f"found {t[name].shape if name in t else 'nothing'}")
    weights = t["weights"].astype(np.float64)
    return MixtureOfFactorAnalyzers(weights / weights.sum(), t["means"], t["loadings"], t["noise_variances"], r, c)


# ---------------------------------------------------------------- sample into a dataset
@dataclass
class GMMSampleConfig:
    """Options of ``patchforensics gmm-sample``: ``n`` samples at ``size`` (None: the
    model's resolution), split like ``sample``; ``noise`` adds the per-pixel term."""

    model: str
    out: str
    n: int = 500
    size: int | None = 128
    seed: int = 0
    noise: bool = False
    jpeg_quality: int | None = None
    split: tuple[float, float, float] = (0.7, 0.1, 0.2)
    batch_size: int = 256
    force: bool = False

    def validate(self) -> None:
        require(self.n > 0, "n", "must be > 0")
        require(self.size is None or self.size >= 8, "size", "must be at least 8 pixels")
        require(self.jpeg_quality is None or 1 <= self.jpeg_quality <= 100, "jpeg_quality",
                "must be between 1 and 100")
        require(len(self.split) == 3 and all(f >= 0 for f in self.split) and abs(sum(self.split) - 1) < 1e-6,
                "split", "give three non-negative fractions summing to 1, e.g. 0.7,0.1,0.2")
        require(self.batch_size > 0, "batch_size", "must be > 0")


def sample_gmm_dataset(model: MixtureOfFactorAnalyzers, cfg: GMMSampleConfig, source: str,
                       progress: bool = True) -> SampleResult:
    """Draw ``cfg.n`` samples (components.npy and latents.npy saved) into a train/val/test folder."""
    images, components, latents = model.sample(cfg.n, np.random.default_rng(cfg.seed), cfg.noise)
    if model.channels == 1:
        images = np.repeat(images, 3, axis=3)
    return write_generated_dataset(
        Path(cfg.out), cfg.n, lambda idx: images[idx], size=cfg.size, jpeg_quality=cfg.jpeg_quality,
        split=cfg.split, seed=cfg.seed, batch_size=cfg.batch_size,
        arrays={"components": components.astype(np.int64), "latents": latents},
        summary={"generator": f"gmm ({source})", "resolution": model.resolution,
                 "n_components": model.n_components, "latent_dim": model.latent_dim, "noise": cfg.noise},
        progress=progress, desc="gmm-sample")


def gmm_sample(cfg: GMMSampleConfig, progress: bool = True) -> SampleResult:
    """``gmm-sample``: load a saved model and write a sampled dataset."""
    cfg.validate()
    model = load_gmm(cfg.model)
    with fileio.atomic_dir(cfg.out, cfg.force) as tmp:   # --force replaces OUT whole, never merges into it
        result = sample_gmm_dataset(model, replace(cfg, out=str(tmp)), str(cfg.model), progress)
    return replace(result, out=Path(cfg.out))


def make_gmm_fakes(real_train_dir: str | Path, out_dir: str | Path, n_train: int = 350, n_val: int = 50,
                   n_test: int = 100, seed: int = 0, progress: bool = True, force: bool = False,
                   fit: GMMFitConfig | None = None) -> Path:
    """One call for demos: fit a GMM on ``real_train_dir`` (fast defaults of
    :class:`GMMFitConfig`) and write a fake dataset ``out_dir/{train,val,test}``
    of the given counts at the reals' size, with the model in ``out_dir/model``.
    Returns ``out_dir``.
    """
    out_dir = Path(out_dir)
    n = n_train + n_val + n_test
    if min(n_train, n_val, n_test) < 0 or n == 0:
        raise ValueError(f"sample counts must be >= 0 with at least one sample; got train {n_train}, "
                         f"val {n_val}, test {n_test}")
    paths = require_images(real_train_dir)
    with Image.open(paths[0]) as first:
        real_size = min(first.size)
    cfg = GMMSampleConfig(model=str(out_dir / "model"), out=str(out_dir), n=n, size=real_size, seed=seed,
                          split=(n_train / n, n_val / n, n_test / n))
    cfg.validate()
    with fileio.atomic_dir(out_dir, force) as tmp:   # force replaces out_dir whole, never merges into it
        model, info = fit_gmm(fit or GMMFitConfig(real=str(real_train_dir), out=str(out_dir / "model"), seed=seed),
                              progress)
        save_gmm(model, tmp / "model", info)
        sample_gmm_dataset(model, replace(cfg, out=str(tmp)), str(real_train_dir), progress)
    return out_dir
