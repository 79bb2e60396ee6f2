# The CPU default: a small char-level Infini-Transformer on Shakespeare's plays that trains
# in 3-6 minutes on 2 CPU cores, to a held-out loss of ~1.63 (README: beside nanoGPT).
# These are the plain defaults of train.py: `python train.py` does the same.
#   python train.py config/train_shakespeare_char.py

out_dir = "out-shakespeare-char"
eval_interval = 250
eval_iters = 20
log_interval = 10
always_save_checkpoint = True

dataset = "shakespeare_char"
batch_size = 4
block_size = 256    # 2 segments per sequence: the memory carries context across them

n_layer = 4
n_head = 4
d_model = 128
segment_len = 128
memory = "delta"
beta_init = -3.0    # gates start almost closed (0.05): a memory read that helps nothing costs little

learning_rate = 4e-3
max_iters = 2800
lr_decay_iters = 0    # the cosine ends at max_iters
min_lr = 4e-4
warmup_iters = 100
weight_decay = 0.1
grad_clip = 1.0
beta_lr_mult = 10.0
