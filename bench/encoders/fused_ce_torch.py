"""The anchor for host/examples/fused_ce.rs: the same loss step in PyTorch (logits = H·Eᵀ for
H 256×64 and E 20000×64, cross-entropy, backward to H and E), median of 15 after a warm-up."""
import statistics
import sys
import time

import torch

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
torch.set_num_threads(threads)
rows, dim, items = 256, 64, 20_000
g = torch.Generator().manual_seed(0)
h = (torch.randn(rows, dim, generator=g) * 0.1).requires_grad_()
e = (torch.randn(items, dim, generator=g) * 0.1).requires_grad_()
labels = torch.tensor([(r * 7919) % items for r in range(rows)])


def step():
    t = time.perf_counter()
    loss = torch.nn.functional.cross_entropy(h @ e.t(), labels)
    loss.backward()
    h.grad = None
    e.grad = None
    return (time.perf_counter() - t) * 1e3


step()
print(f"  torch {torch.__version__}:     {statistics.median(step() for _ in range(15)):7.1f} ms  (median of 15 on {torch.get_num_threads()} threads)")
