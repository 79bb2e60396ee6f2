# A larger char-level Infini-Transformer for one GPU (CuPy): 6 layers, d_model 384,
# sequences of 1024 characters cut into 4 segments of 256.
#   python train.py config/train_shakespeare_char_gpu.py
# (pip install cupy-cuda12x or cupy-cuda13x first, to match your CUDA version)

out_dir = "out-shakespeare-char-gpu"
device = "cuda"
eval_interval = 250
eval_iters = 40
log_interval = 10
always_save_checkpoint = True

dataset = "shakespeare_char"
batch_size = 32
block_size = 1024

n_layer = 6
n_head = 6
d_model = 384
segment_len = 256
memory = "delta"

learning_rate = 1e-3
max_iters = 5000
lr_decay_iters = 0    # the cosine ends at max_iters
min_lr = 1e-4
warmup_iters = 200
weight_decay = 0.1
grad_clip = 1.0
beta_lr_mult = 10.0
