# The CPU default: a small char-level Infini-Transformer on Shakespeare's plays that trains
# in about 4 minutes on 2 CPU cores, to a val loss of ~1.72 on the held-out plays.
# These are the plain defaults of train.py: `python train.py` does the same.
#   python train.py config/train_shakespeare_char.py

out_dir = "out-shakespeare-char"
eval_interval = 100
eval_iters = 12
log_interval = 10
always_save_checkpoint = True

dataset = "shakespeare_char"
batch_size = 12
block_size = 256    # 4 segments per sequence: the memory carries context across them

n_layer = 4
n_head = 4
d_model = 128
segment_len = 64
memory = "delta"

learning_rate = 2e-3
max_iters = 1000
lr_decay_iters = 0    # the cosine ends at max_iters
min_lr = 2e-4
warmup_iters = 100
weight_decay = 0.1
grad_clip = 1.0
beta_lr_mult = 10.0
