# The multi-key recipe (--max_keys=4: 1 to 4 named key lines, the question asks for one):
# a short run from the single-key haystack model, whose retrieval it keeps; the rest is
# config/passkey.py's. docs/passkey.md, "Multi-key retrieval", has the runs behind it.
#   python passkey.py --train config/multikey.py --memory=linear     # then --memory=delta
#   python passkey.py --train config/multikey.py --memory=none --init_weights=passkey_ckpt/haystack-none.npz
filler = "plays"
max_keys = 4
init_weights = "passkey_ckpt/haystack-linear.npz"
key_penalty = 0.0
seed = 1339

# 2,500 steps at a fifth of the scratch learning rate, at up to 8 then 12 filler repeats
max_iters = 2500
learning_rate = 2e-3
min_lr = 3e-4
warmup_iters = 20
n_start = 8
n_end = 12
curriculum_iters = 500
long_iters = 0

# the tune phase: 1,000 steps (delta trains this phase alone, from multikey-linear)
tune_iters = 1000
