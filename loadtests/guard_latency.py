"""``python -m loadtests.guard_latency --data FILE``: the guard (int8 ONNX) against Detoxify's
``original`` architecture in PyTorch, on the same texts and threads; one JSON object.

The measurement is :func:`fairgate.models.guard.latency.measure_latency`; this is its command.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    import pandas as pd

    from fairgate.models.guard.latency import measure_latency
    from fairgate.models.store import get_stored_model

    parser = argparse.ArgumentParser(prog="python -m loadtests.guard_latency", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="fairgate-toxicity", help="store tag of the guard")
    parser.add_argument("--data", required=True, help="CSV with the texts")
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--texts", type=int, default=640, help="how many texts (default 640)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    frame = pd.read_csv(args.data, dtype=str, keep_default_na=False)
    sample = frame.sample(n=min(args.texts, len(frame)), random_state=args.seed)
    texts = sample[args.text_column].tolist()
    stored = get_stored_model(args.model)
    result = measure_latency(stored.path, texts, batch_size=args.batch_size, threads=args.threads)
    result["guard_int8_onnx"]["model"] = stored.tag
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
