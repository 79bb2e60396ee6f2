# The shipped passkey recipe: the models in passkey_ckpt/ were trained with these settings.
# They are the plain defaults of passkey.py, so `python passkey.py --train` does the same:
#   python passkey.py --train config/passkey.py
# passkey.py's docstring says why each part is there; docs/passkey_runs.md has the runs.

# the haystack: the filler line of SPEC.md (--filler=plays: real text, the haystack-<memory> models;
# config/multikey.py: multi-key retrieval, the multikey-<memory> models)
filler = "template"
template_frac = 0.25
data_dir = "data/shakespeare_char"
max_keys = 1

# a 2-layer model; segments of 128 characters; only the last layer's memory is read
n_layer = 2
n_head = 4
d_model = 64
segment_len = 128
rope_base = 10000.0
memory_layers = 1
beta_init = 1.0
beta_lr_mult = 0.0

# the main phase: 7,000 steps, the loss on the answer and the key's second occurrence
max_iters = 7000
batch_size = 16
learning_rate = 1e-2
min_lr = 1e-3
warmup_iters = 50
weight_decay = 0.0
grad_clip = 1.0
answer_weight = 1.0
lm_weight = 0.02

# a curriculum over length, shifted prompts, and local keys after the curriculum
n_start = 4
n_end = 8
curriculum_iters = 1500
long_iters = 5500
n_long = 12
shift_max = 127
short_keys = 0.3
key_last = 0.3

# sparse writes into the memory, and sparse reads in the tune phase
key_penalty = 0.02         # haystack-linear: --key_penalty=0 --seed=1339 (its delta: 0.02, --seed=1339)
key_margin = 8.0
query_penalty = 0.02
query_margin = 8.0

# the tune phase: 1,500 steps with a fresh optimiser, from a memory that starts full
# (but for delta on the plays: there passkey.py leaves far_fill off)
tune_iters = 1500
tune_lr = 1e-3
tune_min_lr = 1e-4
far_fill = 1000000

seed = 1337
