"""sentence-transformers' side of bench/embed_text/run.sh: the same sentences, batch size 32.
Usage: st_embed.py MODEL_DIR SENTENCES_FILE [REPS]. Prints one JSON line like the encore side."""
import json
import sys
import time

import torch
from sentence_transformers import SentenceTransformer


def main():
    model_dir, path = sys.argv[1], sys.argv[2]
    reps = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    sentences = open(path, encoding="utf-8").read().split("\n")
    if sentences and sentences[-1] == "":
        sentences.pop()
    t = time.perf_counter()
    model = SentenceTransformer(model_dir, device="cpu")
    load_s = time.perf_counter() - t
    with torch.inference_mode():
        model.encode(sentences[:32], batch_size=32)  # warm-up
        best = float("inf")
        for _ in range(reps):
            t = time.perf_counter()
            v = model.encode(sentences, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
            best = min(best, time.perf_counter() - t)
            assert len(v) == len(sentences)
    print(json.dumps({"impl": "sentence-transformers", "torch_threads": torch.get_num_threads(), "sentences": len(sentences),
                      "reps": reps, "load_s": round(load_s, 3), "best_s": round(best, 4), "per_s": round(len(sentences) / best, 1)}))


if __name__ == "__main__":
    main()
