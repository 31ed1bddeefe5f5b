"""Why mining keeps 100 per system before fusing: negatives mined with the fusion retriever at
per-system depth 100 vs 1,000 (SciFact train, window 10:100, 8 a query) and the share in common.

Run: .venv/bin/python benchmarks/mining_fusion_depth.py  (measured 2026-12-02: 641/6472 = 9.9%, no
query with the same 8)
"""

import twotower.negatives.retrievers as r
from twotower.data.collection import load_collection
from twotower.negatives.mine import RankWindow, mine_negatives

c = load_collection("scifact", "train")
tables = {}
for depth in (100, 1000):
    r.MINING_FUSION_DEPTH = depth
    retriever = r.build_retriever("fusion", "all-MiniLM-L6-v2", alpha=0.5)
    tables[depth], _ = mine_negatives(
        c, retriever, window=RankWindow(10, 100), count=8, seed=0, use_cache=False
    )
a, b = tables[100], tables[1000]
common = sum(len(set(a[q]) & set(b[q])) for q in a)
total = sum(len(a[q]) for q in a)
same = sum(set(a[q]) == set(b[q]) for q in a)
print(
    f"queries {len(a)}; negatives in common {common}/{total} = {common / total:.1%}; queries with the same 8: {same}"
)
