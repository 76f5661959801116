"""The test numbers of two bench/pinned.sh folders side by side, rounded to 4 decimals (issue #35).

    python bench/pinned_compare.py BEFORE AFTER
"""
import json
import sys
from pathlib import Path

B, A = Path(sys.argv[1]), Path(sys.argv[2])
def load(d, f):
    p = d / f
    return json.loads(p.read_text()) if p.is_file() else None
rows = []
cb, ca = load(B, "classify.json"), load(A, "classify.json")
if cb and ca:
    rb, ra = cb[0]["runs"][0], ca[0]["runs"][0]
    for k in ("test_auc", "test_acc", "test_ece", "best_epoch", "best_val_auc"):
        rows.append(("pneumoniamnist seed 0", k, rb[k], ra[k]))
sb, sa = load(B, "segment.json"), load(A, "segment.json")
if sb and sa:
    rb, ra = sb[0], sa[0]
    rows.append(("hippocampus", "dice_mean", rb["dice_mean"], ra["dice_mean"]))
    rows.append(("hippocampus", "best_val_dice", rb["best_val_dice"], ra["best_val_dice"]))
    for lab in rb["per_label"]:
        for k in ("dice", "hd95_mm"):
            rows.append(("hippocampus " + lab, k, rb["per_label"][lab][k], ra["per_label"][lab][k]))
eb, ea = load(B, "enhance.json"), load(A, "enhance.json")
if eb and ea:
    key = lambda r: (r["case"], r["test_set"], r["level"], r["method"])
    ia = {key(r): r for r in ea}
    first_b = next(r for r in eb if r["case"] == "mr-gaussian")
    first_a = next((r for r in ea if r["case"] == "mr-gaussian"), None)
    rows.append(("mr-gaussian", "best_val_psnr", first_b["best_val_psnr"], first_a and first_a["best_val_psnr"]))
    for r in eb:
        if r["case"] != "mr-gaussian":
            continue
        a = ia.get(key(r))
        for k in ("psnr", "ssim"):
            rows.append((f"mr-gaussian {r['test_set'][:28]} {r['method']}", k, r[k], a[k] if a else None))
print("| run | number | before | after | |")
print("|---|---|---|---|---|")
for name, k, b, a in rows:
    same = a is not None and round(b, 4) == round(a, 4)
    print(f"| {name} | {k} | {b:.4f} | {a if a is None else format(a, '.4f')} | {'same' if same else 'DIFF'} |")
