"""Unit tests of the model's math (synthetic inputs are fine here) and of checkpoint I/O."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy import stats

from foundation.checkpoint import read_checkpoint, write_checkpoint
from foundation.config import CellVQConfig
from foundation.distributions import NegativeBinomial, ZeroInflatedNegativeBinomial
from foundation.errors import CheckpointError
from foundation.nn.attention import GeneSelfAttention, padded_varlen_attention
from foundation.nn.encoder import GeneExpressionEncoder
from foundation.nn.module import CellVQModule, LossWeights, info_nce
from foundation.nn.quantize import EMAVectorQuantizer, SoftConditionalVQ, code_to_str
from foundation.tokens import make_batch, random_panel, thin_counts


def test_nb_log_prob_matches_scipy():
    mu = torch.tensor([0.1, 1.0, 5.0, 50.0])
    theta = torch.tensor([0.5, 2.0, 10.0, 1.0])
    x = torch.tensor([0.0, 3.0, 5.0, 80.0])
    ours = NegativeBinomial(mu, theta).log_prob(x).numpy()
    p = (theta / (theta + mu)).numpy()
    ref = stats.nbinom.logpmf(x.numpy(), theta.numpy(), p)
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4)


def test_zinb_is_a_distribution_and_reduces_to_nb():
    mu, theta, logit = torch.tensor(3.0), torch.tensor(1.5), torch.tensor(0.3)
    x = torch.arange(0, 400).float()
    total = ZeroInflatedNegativeBinomial(mu, theta, logit).log_prob(x).exp().sum()
    assert abs(float(total) - 1.0) < 1e-4
    pi = torch.sigmoid(logit)
    p0 = ZeroInflatedNegativeBinomial(mu, theta, logit).log_prob(torch.tensor(0.0)).exp()
    nb0 = NegativeBinomial(mu, theta).log_prob(torch.tensor(0.0)).exp()
    assert torch.allclose(p0, pi + (1 - pi) * nb0, atol=1e-6)
    no_zi = ZeroInflatedNegativeBinomial(mu, theta, torch.tensor(-30.0)).log_prob(x[:20])
    assert torch.allclose(no_zi, NegativeBinomial(mu, theta).log_prob(x[:20]), atol=1e-5)


def test_zinb_sample_moments():
    torch.manual_seed(0)
    d = ZeroInflatedNegativeBinomial(torch.full((200_000,), 4.0), torch.full((200_000,), 2.0), torch.full((200_000,), -1.0))
    s = d.sample()
    assert abs(float(s.mean()) - float(d.mean[0])) < 0.05
    assert abs(float(s.var()) / float(d.variance[0]) - 1) < 0.05


def test_sdpa_and_explicit_attention_agree():
    torch.manual_seed(0)
    att = GeneSelfAttention(32, 4).eval()
    x = torch.randn(3, 7, 32)
    pad = torch.zeros(3, 7, dtype=torch.bool)
    pad[1, 5:] = True
    y1, _ = att(x, pad)
    y2, w = att(x, pad, return_weights=True)
    assert torch.allclose(y1, y2, atol=1e-5)
    assert torch.allclose(w.sum(-1), torch.ones_like(w.sum(-1)))
    assert float(w[1, :, :, 5:].detach().abs().max()) == 0.0  # padding gets no attention


def test_encoder_is_invariant_to_padding():
    torch.manual_seed(0)
    enc = GeneExpressionEncoder(50, 16, 2, 2, 32).eval()
    ids = torch.tensor([[3, 7, 9]])
    vals = torch.tensor([[1.0, 2.0, 0.5]])
    p1, _, _ = enc(ids, vals, torch.zeros(1, 3, dtype=torch.bool))
    ids2 = torch.tensor([[3, 7, 9, 50, 50]])
    vals2 = torch.tensor([[1.0, 2.0, 0.5, 0.0, 0.0]])
    p2, _, _ = enc(ids2, vals2, ids2 == 50)
    assert torch.allclose(p1, p2, atol=1e-5)


def test_packed_attention_matches_per_cell_attention():
    """Packed tokens (cells back to back, cumulative offsets) attend only within their own cell."""
    torch.manual_seed(0)
    lengths = [5, 1, 9, 3]
    cu = torch.tensor([0, *np.cumsum(lengths)], dtype=torch.int32)
    q, k, v = (torch.randn(int(cu[-1]), 2, 8) for _ in range(3))
    y = padded_varlen_attention(q, k, v, cu, max(lengths))
    for i in range(len(lengths)):
        sl = slice(int(cu[i]), int(cu[i + 1]))
        ref = torch.nn.functional.scaled_dot_product_attention(
            q[sl].transpose(0, 1), k[sl].transpose(0, 1), v[sl].transpose(0, 1)).transpose(0, 1)
        assert torch.allclose(y[sl], ref, atol=1e-5)


def test_encoder_packed_and_padded_paths_agree_forward_and_backward():
    """The packed path (what a GPU runs, with variable-length flash attention) computes the same embedding,
    token states and gradients as the padded path, on cells of very different lengths."""
    torch.manual_seed(0)
    cfg = CellVQConfig.tiny(n_genes=300, max_tokens=64)
    m = CellVQModule(cfg).train()
    rng = np.random.default_rng(0)
    x = sp.random(10, 300, density=0.15, random_state=0, data_rvs=lambda n: rng.integers(1, 20, n)).tolil()
    x[3, :] = 0
    x[3, 5] = 2  # a one-gene cell
    b = make_batch(x.tocsr(), np.ones(300, bool), 64)
    assert b.pad_mask.sum(1).max() > 30 and b.pad_mask.sum(1).min() == 0
    valid = (~b.pad_mask)[..., None]
    res = {}
    for impl in ("padded", "packed"):
        m.zero_grad()
        m.encoder.attention = impl
        pooled, tokens, _ = m.encoder(b.gene_ids, b.values, b.pad_mask)
        tokens = tokens * valid
        (pooled.square().sum() + tokens.square().sum()).backward()
        res[impl] = (pooled.detach(), tokens.detach(), {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None})
    (p1, t1, g1), (p2, t2, g2) = res["padded"], res["packed"]
    assert torch.allclose(p1, p2, atol=1e-5) and torch.allclose(t1, t2, atol=1e-5)
    assert g1.keys() == g2.keys() and "encoder.cls" in g2
    for name in g1:
        assert torch.allclose(g1[name], g2[name], rtol=1e-4, atol=1e-3), name
    m.encoder.attention = "ragged"
    with pytest.raises(ValueError, match="attention='ragged'"):
        m.encoder(b.gene_ids, b.values, b.pad_mask)


def test_packed_path_under_bf16_autocast_matches_fp32_and_trains():
    """The dtype plumbing of what a GPU runs (packed tokens, bf16 autocast), checked with CPU autocast: the
    embedding agrees with fp32 to bf16 precision and a whole pretraining step backpropagates."""
    torch.manual_seed(0)
    m = CellVQModule(CellVQConfig.tiny(n_genes=300, max_tokens=64)).train()
    rng = np.random.default_rng(0)
    x = sp.random(10, 300, density=0.15, random_state=0, data_rvs=lambda n: rng.integers(1, 20, n)).tocsr()
    b = make_batch(x, np.ones(300, bool), 64, mask_ratio=0.3, rng=rng)
    b2 = make_batch(thin_counts(x, rng), np.ones(300, bool), 64, mask_ratio=0.3, rng=rng, with_targets=False)
    m.encoder.attention = "padded"
    with torch.no_grad():
        ref = m.encoder(b.gene_ids, b.values, b.pad_mask)[0]
    m.encoder.attention = "packed"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with torch.no_grad():
            pooled = m.encoder(b.gene_ids, b.values, b.pad_mask)[0]
        out = m.loss(b, LossWeights(contrastive=1.0), view2=b2)
    assert float((pooled.float() - ref).norm() / ref.norm()) < 1e-2
    out.loss.backward()
    assert torch.isfinite(out.loss) and m.encoder.blocks[0].attn.qkv.weight.grad.abs().sum() > 0


def test_gpu_benchmark_code_paths_run_on_cpu(tmp_path):
    """The GPU benchmark is run on a lent GPU with minutes of budget: its code paths are checked here, on
    real pbmc3k cells at a tiny size, so that it does not fail there."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "foundation_gpu.py"
    spec = importlib.util.spec_from_file_location("foundation_gpu", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    report = bench.main(["--smoke", "--device", "cpu", "--cells", "96", "--out", str(tmp_path)])
    r = report["sizes"]["smoke"]
    for key in ("dense_embed", "dense_train", "cellvq_packed_embed", "cellvq_padded_embed",
                "cellvq_packed_encoder_train", "cellvq_padded_encoder_train", "cellvq_full_pretrain_step"):
        assert r[key].get("cells_per_s", 0) > 0, (key, r[key])
    assert r["packed_vs_padded_rel_err"] < 1e-4
    assert (tmp_path / "foundation_gpu_smoke.md").exists()
    # FLOP count: one layer of d=2, d_ff=4 over one 3-token cell = 3 * 2*(4*4 + 2*8) + 4*2*9
    assert bench.encoder_flops(np.array([3]), 2, 1, 4) == 3 * 2 * (16 + 16) + 4 * 2 * 9


def test_soft_conditional_vq_codes_and_annealing():
    torch.manual_seed(0)
    q = SoftConditionalVQ(16, bits=6, hidden=32)
    cb = q.codebook()
    assert cb.shape == (64, 16)
    assert torch.allclose(cb.norm(dim=-1), torch.ones(64), atol=1e-5)
    assert code_to_str(17 * 64 + 42, 4096) == "17-42"
    z = torch.randn(32, 16)
    q.train()
    ents = []
    for tau in (1.0, 0.1, 0.01):
        q.tau.fill_(tau)
        p = q(z).probs
        ents.append(float(-(p * (p + 1e-12).log()).sum(-1).mean()))
    assert ents[0] > ents[1] > ents[2]  # lower temperature -> harder assignment
    q.eval()
    out = q(z)
    assert torch.allclose(out.z_q, cb[out.codes], atol=1e-6)


def test_ema_vq_finds_clusters_and_reseeds_dead_codes():
    torch.manual_seed(0)
    centers = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    labels = torch.randint(0, 4, (2000,))
    z = centers[labels] + 0.05 * torch.randn(2000, 8)
    q = EMAVectorQuantizer(8, n_codes=16, decay=0.9).train()
    for _ in range(50):
        out = q(z)
    q.eval()
    codes = q(z).codes
    # codes are pure: every used code holds (almost) only one true cluster
    for k in codes.unique():
        _, counts = labels[codes == k].unique(return_counts=True)
        assert counts.max() / counts.sum() > 0.95
    q.cluster_size[:8] = 0.0
    assert q._reseed_dead(torch.nn.functional.normalize(z, dim=-1)) >= 8
    assert out.perplexity > 1.5


def test_make_batch_masks_and_pads():
    X = sp.csr_matrix(np.array([[0, 5, 1, 0, 2, 9], [1, 0, 0, 0, 0, 0]], dtype=np.float32))
    measured = np.array([1, 1, 1, 1, 0, 1], dtype=bool)
    b = make_batch(X, measured, max_tokens=3, mask_ratio=0.34, rng=np.random.default_rng(0))
    assert b.gene_ids.shape[0] == 2
    # row 0 keeps its 3 highest genes (5, 1?, 2, 9 -> 9, 5, 2), one masked, two fed
    fed = set(b.gene_ids[0][~b.pad_mask[0]].tolist())
    masked = set(np.flatnonzero(b.masked[0].numpy()).tolist())
    assert len(fed) == 2 and len(masked) == 1 and (fed | masked) == {1, 4, 5}
    assert b.library.tolist() == [17.0, 1.0]


def tiny_module_and_counts():
    torch.manual_seed(0)
    m = CellVQModule(CellVQConfig.tiny(n_genes=30, code_bits=6))
    X = sp.random(8, 30, density=0.4, format="csr", random_state=0, dtype=np.float32)
    X.data = np.ceil(X.data * 10)
    return m, X


def test_module_loss_is_finite_and_backprops():
    m, X = tiny_module_and_counts()
    b = make_batch(X, np.ones(30, bool), 16, mask_ratio=0.3, rng=np.random.default_rng(0))
    out = m.loss(b)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert m.encoder.gene_embedding.weight.grad is not None


def test_thin_counts_is_binomial_downsampling():
    rng = np.random.default_rng(0)
    X = sp.csr_matrix(rng.poisson(3.0, size=(400, 50)).astype(np.float32))
    X[7] = 0
    X[7, 3] = 1  # a one-count cell
    X = sp.csr_matrix(X)
    T = thin_counts(X, np.random.default_rng(1), keep_min=0.5)
    assert T.shape == X.shape
    assert np.all(T.data == np.round(T.data)) and (T.data > 0).all()
    assert (T.toarray() <= X.toarray()).all()  # only ever removes UMIs
    kept = np.asarray(T.sum(1)).ravel() / np.asarray(X.sum(1)).ravel()
    assert (kept > 0).all()  # no cell is thinned to nothing
    # one keep-probability per cell, drawn from U(0.5, 1): mean 0.75
    assert abs(np.median(kept) - 0.75) < 0.05 and kept.min() > 0.3
    assert np.array_equal(thin_counts(X, np.random.default_rng(1), 0.5).toarray(), T.toarray())  # seeded


def test_random_panel_keeps_a_variable_gene_panel(pbmc3k):
    """The second view's random panel: K genes within bounds among the measured ones, counts only there (a
    cell with none in the panel keeps its own), drawn towards genes that vary (as an HVG panel would be)."""
    X = pbmc3k.X[:256].tocsr().astype(np.float32)
    measured = np.ones(X.shape[1], bool)
    measured[:1000] = False  # genes this experiment did not measure are never in a panel
    X = sp.csr_matrix(X.multiply(measured[None, :]))
    X.eliminate_zeros()
    sizes, hvg_share = [], []
    norm = X.multiply(1e4 / np.asarray(X.sum(1))).tocsr().log1p()
    var = np.asarray(norm.multiply(norm).mean(0)).ravel() - np.asarray(norm.mean(0)).ravel() ** 2
    top = np.argsort(-var)[:300]
    rng = np.random.default_rng(0)
    for _ in range(20):
        C, m = random_panel(X, measured, rng, min_genes=200, max_genes=4000)
        k = int(m.sum())
        sizes.append(k)
        assert 200 <= k <= 4000 and not m[:1000].any()
        assert set(np.unique(C.indices)) <= set(np.flatnonzero(m))
        assert (np.asarray(C.sum(1)).ravel() > 0).all()
        D = (C - X.multiply(m[None, :])).tocsr()
        assert abs(D).sum() == 0  # panel genes keep their counts exactly
        hvg_share.append(m[top].mean() / (k / measured.sum()))
    assert min(sizes) < 600 and max(sizes) > 1500  # log-uniform over the range
    assert np.median(hvg_share) > 3  # variable genes are several times over-represented
    C1, m1 = random_panel(X, measured, np.random.default_rng(5))
    C2, m2 = random_panel(X, measured, np.random.default_rng(5))
    assert np.array_equal(m1, m2) and (C1 != C2).nnz == 0  # seeded
    # a cell with no counts in the panel keeps its own
    Y = sp.csr_matrix(([5.0, 1.0], ([0, 1], [0, 2])), shape=(2, 300))
    meas = np.ones(300, bool)
    for seed in range(10):
        C, m = random_panel(Y, meas, np.random.default_rng(seed), min_genes=2, max_genes=3)
        assert (np.asarray(C.sum(1)).ravel() > 0).all()


def test_info_nce_rewards_matching_views():
    torch.manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(32, 16), dim=-1)
    near = torch.nn.functional.normalize(a + 0.05 * torch.randn(32, 16), dim=-1)
    matched = info_nce(a, near, 0.1)
    shuffled = info_nce(a, near[torch.randperm(32)], 0.1)
    assert matched < 0.1 < np.log(32) - 1 < shuffled
    assert torch.allclose(info_nce(a, near, 0.1), info_nce(near, a, 0.1), atol=1e-6)  # symmetric


def test_module_contrastive_view_adds_a_loss_that_backprops():
    m, X = tiny_module_and_counts()
    rng = np.random.default_rng(0)
    b = make_batch(X, np.ones(30, bool), 16, mask_ratio=0.3, rng=rng)
    v = make_batch(thin_counts(X, rng), np.ones(30, bool), 16, mask_ratio=0.3, rng=rng, with_targets=False)
    plain = m.loss(b)
    both = m.loss(b, LossWeights(contrastive=1.0), view2=v)
    assert float(plain.contrastive) == 0.0 and float(both.contrastive) > 0
    assert torch.allclose(both.loss - both.contrastive, plain.loss, atol=1e-5)
    both.loss.backward()
    assert m.proj[0].weight.grad is not None


def test_base_config_has_over_100m_parameters():
    cfg = CellVQConfig.base(n_genes=20000)
    with torch.device("meta"):
        m = CellVQModule(cfg)
    assert sum(p.numel() for p in m.parameters()) >= 100_000_000


@pytest.mark.parametrize("preset, millions", [("medium", 38), ("large", 302)])
def test_medium_and_large_presets_match_the_dense_reference_sizes(preset, millions):
    """The issue's dense references are 38M and 302M parameters; the presets' transformer blocks are too."""
    cfg = getattr(CellVQConfig, preset)(n_genes=20000)
    with torch.device("meta"):
        m = CellVQModule(cfg)
    blocks = sum(p.numel() for p in m.encoder.blocks.parameters())
    assert round(blocks / 1e6) == millions, blocks


def test_checkpoint_roundtrip_and_errors(tmp_path):
    state = {"w": torch.arange(6.0).reshape(2, 3)}
    p = write_checkpoint(tmp_path / "ck", state, {"config": {"a": 1}}, {"symbols": ["A"]})
    s2, cfg, vocab = read_checkpoint(p)
    assert torch.equal(s2["w"], state["w"]) and cfg["config"] == {"a": 1} and vocab == {"symbols": ["A"]}
    # corrupt weights
    (p / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="corrupt"):
        read_checkpoint(p)
    # wrong kind of checkpoint
    write_checkpoint(p, state, {"config": {}}, {})
    meta = json.loads((p / "config.json").read_text())
    meta["format"] = "cellvq-graph"
    (p / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="not a CellVQ checkpoint"):
        read_checkpoint(p)
    with pytest.raises(CheckpointError, match="not a CellVQ checkpoint folder"):
        read_checkpoint(tmp_path / "nowhere")


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    import foundation.checkpoint as ck

    p = write_checkpoint(tmp_path / "ck", {"w": torch.ones(2)}, {"config": {"v": 1}}, {})

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(ck, "save_file", boom)
    with pytest.raises(RuntimeError):
        write_checkpoint(p, {"w": torch.zeros(2)}, {"config": {"v": 2}}, {})
    s, cfg, _ = read_checkpoint(p)  # the old checkpoint is intact, no temp folders left
    assert cfg["config"] == {"v": 1} and torch.equal(s["w"], torch.ones(2))
    assert [x.name for x in tmp_path.iterdir()] == ["ck"]
