"""Run under ``torchrun --nproc_per_node 2`` on CPU (gloo) by tests/test_distributed.py.

1. The EMA quantiser's update under torch.distributed equals a single process's update on the global batch.
2. A short DDP pretraining run on real pbmc3k counts (EMA quantiser): every rank ends with the same weights and
   codebook; rank 0 writes the checkpoint. Each rank saves what it holds to ``OUT/rank{r}.pt``.
"""

import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

out = Path(sys.argv[1])
rank = int(os.environ["RANK"])
torch.set_num_threads(1)

from foundation import CellVQ, CellVQConfig, datasets  # noqa: E402
from foundation.config import TrainConfig  # noqa: E402
from foundation.nn.quantize import EMAVectorQuantizer  # noqa: E402

# 1. EMA statistics over the global batch: the reference is one process's update on the concatenated batch
torch.manual_seed(0)
q = EMAVectorQuantizer(8, n_codes=16, dead_threshold=0.0).train()
ref = EMAVectorQuantizer(8, n_codes=16, dead_threshold=0.0).train()
ref.load_state_dict(q.state_dict())
zs = [torch.randn(32, 8, generator=torch.Generator().manual_seed(100 + r)) for r in range(int(os.environ["WORLD_SIZE"]))]
ref(torch.cat(zs))
dist.init_process_group("gloo")  # kept by CellVQ.pretrain below, which tears it down at the end
q(zs[rank])
ema = {k: bool(torch.allclose(getattr(q, k), getattr(ref, k), atol=1e-6)) for k in ("embedding", "embed_sum", "cluster_size")}

# 2. DDP pretraining (CellVQ.pretrain sets the process group up from the torchrun environment)
tc = TrainConfig(epochs=3, batch_size=32, lr=2e-3, warmup_steps=5, max_cells_per_file=640, log_every=1, seed=0)
model = CellVQ.pretrain([datasets.dataset_path("pbmc3k")], CellVQConfig.tiny(quantizer="ema"), tc,
                        out=out / "ckpt", progress=False)
state = {k: v.detach().clone() for k, v in model.module.state_dict().items()}
torch.save({"ema_matches_global_batch": ema, "state": state, "history": model.history}, out / f"rank{rank}.pt")
